/*
 * JSON and JSON Lines answers: each record's label and class probabilities,
 * written into one buffer without the GIL (called through ctypes, fastjson.py).
 * encoders.py hands over the constant text around the numbers (per winning
 * class, between the probabilities, between records), so this file knows no
 * JSON: it writes doubles exactly as Python's repr() does, and the text between.
 *
 * repr() writes the shortest decimal that reads back to the same double (and
 * of those, the nearest). The digits come from Schubfach (R. Giulietti, "The
 * Schubfach way to render doubles", 2020), after A. Bolz's implementation in
 * Drachennest (Boost Software License 1.0): three 64x128-bit products with a
 * 128-bit power of ten, from pow10_table.h, which native.py generates at build
 * time. The layout follows CPython's float_repr_style "short": positional when
 * the decimal point falls between 10^-4 and 10^16, else "d.ddde-XX".
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pow10_table.h"

/* The longest repr() of a double: "-2.2250738585072014e-308". */
#define LONGEST_DOUBLE 24

typedef unsigned __int128 uint128;

/* floor(x / 2^n) for any sign of x. */
static int32_t floor_shift(int32_t x, int n) { return x >= 0 ? x >> n : -((-x + (1 << n) - 1) >> n); }

/* The high 64 bits of g * cp / 2^64, with the bits below folded in as a sticky low bit. */
static uint64_t round_to_odd(const uint64_t g[2], uint64_t cp) {
    uint128 x = (uint128)cp * g[1];
    uint128 y = (uint128)cp * g[0] + (uint64_t)(x >> 64);
    return (uint64_t)(y >> 64) | ((uint64_t)y > 1);
}

/* A finite, nonzero double's shortest decimal: value = *digits * 10^*exponent. */
static void shortest(uint64_t fraction, uint32_t biased_exponent, uint64_t *digits, int32_t *exponent) {
    uint64_t c;
    int32_t q;
    if (biased_exponent != 0) {
        c = (1ULL << 52) | fraction;
        q = (int32_t)biased_exponent - 1075;
        /* Integers below 2^53 are their own shortest decimal. */
        if (q <= 0 && -q < 53 && (c & ((1ULL << -q) - 1)) == 0) {
            *digits = c >> -q;
            *exponent = 0;
            return;
        }
    } else {
        c = fraction;
        q = -1074;
    }
    const int even = (c & 1) == 0;
    const int lower_closer = fraction == 0 && biased_exponent > 1;
    const uint64_t cbl = 4 * c - 2 + (uint64_t)lower_closer, cb = 4 * c, cbr = 4 * c + 2;
    /* k = floor(log10(2^q)), or floor(log10(3/4 2^q)) when the lower neighbour is closer. */
    const int32_t k = floor_shift(q * 1262611 - (lower_closer ? 524031 : 0), 22);
    const int h = q + floor_shift(-k * 1741647, 19) + 1;
    const uint64_t *g = POW10[-k - POW10_MIN_K];
    const uint64_t vbl = round_to_odd(g, cbl << h), vb = round_to_odd(g, cb << h),
                   vbr = round_to_odd(g, cbr << h);
    const uint64_t lower = vbl + !even, upper = vbr - !even;
    const uint64_t s = vb / 4;
    if (s >= 10) {
        /* One digit fewer, if exactly one of its two neighbours rounds back to the double. */
        const uint64_t sp = s / 10;
        const int up_inside = lower <= 40 * sp, wp_inside = 40 * sp + 40 <= upper;
        if (up_inside != wp_inside) {
            *digits = sp + (uint64_t)wp_inside;
            *exponent = k + 1;
            return;
        }
    }
    const int u_inside = lower <= 4 * s, w_inside = 4 * s + 4 <= upper;
    if (u_inside != w_inside) {
        *digits = s + (uint64_t)w_inside;
        *exponent = k;
        return;
    }
    /* Both or neither: the nearer, ties to even. */
    const uint64_t middle = 4 * s + 2;
    *digits = s + (uint64_t)(vb > middle || (vb == middle && (s & 1) != 0));
    *exponent = k;
}

static char *put(char *out, const char *text, size_t length) {
    memcpy(out, text, length);
    return out + length;
}

/* value as repr(value) writes it; the position after it. */
static char *write_double(char *out, double value) {
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    const uint64_t fraction = bits & ((1ULL << 52) - 1);
    const uint32_t biased_exponent = (uint32_t)(bits >> 52) & 0x7FF;
    if (biased_exponent == 0x7FF && fraction != 0) return put(out, "nan", 3);
    if (bits >> 63) *out++ = '-';
    if (biased_exponent == 0x7FF) return put(out, "inf", 3);
    if (biased_exponent == 0 && fraction == 0) return put(out, "0.0", 3);

    uint64_t digits;
    int32_t exponent;
    shortest(fraction, biased_exponent, &digits, &exponent);
    for (; digits % 10 == 0; digits /= 10) exponent++;
    char text[20];
    int length = 0;
    for (char *p = text + sizeof text; digits != 0; digits /= 10, length++) *--p = (char)('0' + digits % 10);
    const char *d = text + sizeof text - length;
    /* value = 0.d * 10^point */
    const int point = length + exponent;
    if (point <= -4 || point > 16) {
        *out++ = d[0];
        if (length > 1) {
            *out++ = '.';
            out = put(out, d + 1, (size_t)length - 1);
        }
        int power = point - 1;
        *out++ = 'e';
        *out++ = power < 0 ? '-' : '+';
        if (power < 0) power = -power;
        if (power >= 100) *out++ = (char)('0' + power / 100);
        *out++ = (char)('0' + power / 10 % 10);
        *out++ = (char)('0' + power % 10);
        return out;
    }
    if (point <= 0) {
        out = put(out, "0.", 2);
        memset(out, '0', (size_t)-point);
        return put(out - point, d, (size_t)length);
    }
    if (point < length) {
        out = put(out, d, (size_t)point);
        *out++ = '.';
        return put(out, d + point, (size_t)(length - point));
    }
    out = put(out, d, (size_t)length);
    memset(out, '0', (size_t)(point - length));
    return put(out + point - length, ".0", 2);
}

/* A piece of constant text. */
struct text {
    const char *start;
    size_t length;
};

/* The constant text of an answer; a record is heads[winner] p0 gaps[1] p1 ... p(n-1) record_end. */
struct answer {
    struct text opening, separator, closing, record_end;
    const struct text *heads; /* per class, for the record's winning class: up to p0 */
    const struct text *gaps;  /* per class j >= 1: between p(j-1) and pj */
    size_t classes;
};

/* The most bytes one record can take (the caller sizes the buffer with it). */
size_t fastjson_record_bound(const struct answer *a) {
    size_t head = 0, bound = a->separator.length + a->record_end.length + a->classes * LONGEST_DOUBLE;
    for (size_t j = 0; j < a->classes; j++) {
        if (a->heads[j].length > head) head = a->heads[j].length;
        if (j > 0) bound += a->gaps[j].length;
    }
    return bound + head;
}

/*
 * Write the answer for records rows of a->classes probabilities (row-major)
 * and their winning classes into out. Returns the bytes written, or -1 if out
 * (capacity bytes) is too small or a winner is not a class.
 */
long long fastjson_write(const struct answer *a, const int64_t *winners, const double *probabilities,
                         size_t records, char *out, size_t capacity) {
    const size_t fixed = a->opening.length + a->closing.length;
    if (capacity < fixed || (capacity - fixed) / fastjson_record_bound(a) < records) return -1;
    char *p = put(out, a->opening.start, a->opening.length);
    for (size_t i = 0; i < records; i++) {
        const int64_t winner = winners[i];
        if (winner < 0 || (uint64_t)winner >= a->classes) return -1;
        if (i > 0) p = put(p, a->separator.start, a->separator.length);
        p = put(p, a->heads[winner].start, a->heads[winner].length);
        const double *row = probabilities + i * a->classes;
        for (size_t j = 0; j < a->classes; j++) {
            if (j > 0) p = put(p, a->gaps[j].start, a->gaps[j].length);
            p = write_double(p, row[j]);
        }
        p = put(p, a->record_end.start, a->record_end.length);
    }
    p = put(p, a->closing.start, a->closing.length);
    return (long long)(p - out);
}
