/*
 * The fast path for CSV request bodies: plain numbers, comma-separated, one
 * record per line, into a row-major float64 matrix. It reads the body in the
 * chunks it arrived in (a line may span them), so the server never joins a
 * large body into one more copy. Called through ctypes (fastcsv.py), which
 * releases the GIL for the call.
 *
 * It accepts only what it can parse exactly like Python's float(): an
 * optional sign, digits with an optional decimal point, an optional exponent;
 * an empty cell is NaN; "\r\n" line ends and blank lines are fine. Anything
 * else (spaces, quotes, text such as "nan", a wrong column count) stops it,
 * and the caller's exact Python parser takes the whole body over, to parse it
 * or to name what is wrong.
 *
 * Every value is correctly rounded, as float() is: a mantissa up to 2^53 with
 * a power of ten up to 22 is one exact IEEE division or multiplication
 * (Clinger's fast path); any other number goes to strtod, which glibc rounds
 * correctly.
 *
 * Most numbers take plain_number(): no bounds checks (every line is followed
 * in memory by its '\n', or a '\n' put after a line carried over from earlier
 * chunks, and neither is part of a number) and no per-digit limit checks,
 * about half the instructions per digit; it leaves any other number to the
 * general number().
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const double POWERS_OF_TEN[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
/* More significant digits than this go to strtod (the mantissa stays in 64 bits). */
#define MANTISSA_LIMIT 100000000000000000ULL
#define LONGEST_NUMBER 127

static int is_digit(char c) { return (unsigned)(c - '0') < 10; }

/* One number in [p, end): the position after it, or NULL if it is not one. */
static const char *number(const char *p, const char *end, double *value) {
    const char *start = p;
    int negative = 0, digits = 0, exponent = 0, inexact = 0;
    uint64_t mantissa = 0;
    if (p < end && (*p == '-' || *p == '+')) {
        negative = *p == '-';
        p++;
    }
    for (; p < end && is_digit(*p); p++, digits++) {
        if (mantissa < MANTISSA_LIMIT) {
            mantissa = mantissa * 10 + (uint64_t)(*p - '0');
        } else {
            inexact = 1;
            exponent++;
        }
    }
    if (p < end && *p == '.') {
        for (p++; p < end && is_digit(*p); p++, digits++) {
            if (mantissa < MANTISSA_LIMIT) {
                mantissa = mantissa * 10 + (uint64_t)(*p - '0');
                exponent--;
            } else {
                inexact = 1;
            }
        }
    }
    if (digits == 0) return NULL;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int exponent_negative = 0, written = 0, power = 0;
        p++;
        if (p < end && (*p == '-' || *p == '+')) {
            exponent_negative = *p == '-';
            p++;
        }
        for (; p < end && is_digit(*p); p++, written++) {
            if (power < 100000) power = power * 10 + (*p - '0');
        }
        if (written == 0) return NULL;
        exponent += exponent_negative ? -power : power;
    }
    if (!inexact && mantissa <= (1ULL << 53) && exponent >= -22 && exponent <= 22) {
        double magnitude = (double)mantissa;
        magnitude = exponent < 0 ? magnitude / POWERS_OF_TEN[-exponent]
                                 : magnitude * POWERS_OF_TEN[exponent];
        *value = negative ? -magnitude : magnitude;
        return p;
    }
    char text[LONGEST_NUMBER + 1];
    size_t length = (size_t)(p - start);
    if (length > LONGEST_NUMBER) return NULL;
    memcpy(text, start, length);
    text[length] = '\0';
    *value = strtod(text, NULL);
    return p;
}

/*
 * The common number at p: an optional sign, at most 18 digits with an optional
 * '.' and no exponent, that Clinger's fast path takes. It reads up to the first
 * byte that is no part of a number, which the '\r' or '\n' after the line is
 * at the latest. The position after it; or NULL, and number() decides.
 */
static const char *plain_number(const char *p, double *value) {
    int negative = *p == '-';
    if (*p == '-' || *p == '+') p++;
    const char *first = p;
    uint64_t mantissa = 0;
    for (; is_digit(*p); p++) mantissa = mantissa * 10 + (uint64_t)(*p - '0');
    size_t digits = (size_t)(p - first), fraction = 0;
    if (*p == '.') {
        const char *fraction_first = ++p;
        for (; is_digit(*p); p++) mantissa = mantissa * 10 + (uint64_t)(*p - '0');
        fraction = (size_t)(p - fraction_first);
        digits += fraction;
    }
    /* Up to 18 digits the mantissa is exact, number() would keep every one of them, and
       the power of ten (at most 18) is in Clinger's range. */
    if (digits == 0 || digits > 18 || *p == 'e' || *p == 'E' || mantissa > (1ULL << 53)) {
        return NULL;
    }
    double magnitude = (double)mantissa / POWERS_OF_TEN[fraction];
    *value = negative ? -magnitude : magnitude;
    return p;
}

/*
 * One line [p, line_end), without its '\n', into row: 0, or -1 if it is not
 * for the fast path. The byte at line_end is its '\r' or '\n'.
 */
static int record(const char *p, const char *line_end, size_t width, double *row) {
    size_t column = 0;
    for (;;) {
        const char *after;
        if (column == width) return -1;
        if (p == line_end || *p == ',') {
            row[column] = NAN;
        } else if ((after = plain_number(p, &row[column])) != NULL) {
            p = after;
        } else if ((p = number(p, line_end, &row[column])) == NULL) {
            return -1;
        }
        column++;
        if (p == line_end) break;
        if (*p != ',') return -1;
        p++;
    }
    return column == width ? 0 : -1;
}

struct matrix {
    double *out;
    size_t width, capacity, rows;
};

/* A whole line: skipped if blank, else the next row. 0, or -1 if not for the fast path. */
static int line(struct matrix *m, const char *p, const char *line_end) {
    if (line_end > p && line_end[-1] == '\r') line_end--;
    if (line_end == p) return 0;
    if (m->rows == m->capacity) return -1;
    if (record(p, line_end, m->width, m->out + m->rows * m->width) != 0) return -1;
    m->rows++;
    return 0;
}

/* Append [p, end) to the partial line carried over, keeping a byte free for its '\n'. */
static int carry(char **held, size_t *length, size_t *room, const char *p, const char *end) {
    size_t more = (size_t)(end - p);
    if (*length + more + 1 > *room) {
        size_t grown = 2 * (*length + more + 1);
        char *bigger = realloc(*held, grown);
        if (bigger == NULL) return -1;
        *held = bigger;
        *room = grown;
    }
    memcpy(*held + *length, p, more);
    *length += more;
    return 0;
}

/* The whole line carried over, ended with a '\n' as a line in a chunk is. */
static int held_line(struct matrix *m, char *held, size_t length) {
    held[length] = '\n';
    return line(m, held, held + length);
}

/*
 * Parse a body that arrived in count chunks (chunks[i] of lengths[i] bytes; a
 * line may span chunks) into out, capacity rows of width values each.
 * Returns the number of records, or -1 if the body is not for the fast path.
 */
long long fastcsv_parse(const char *const *chunks, const size_t *lengths, size_t count,
                        size_t width, double *out, size_t capacity) {
    struct matrix m = {out, width, capacity, 0};
    char *held = NULL;
    size_t held_length = 0, held_room = 0;
    int failed = 0;
    for (size_t i = 0; i < count && !failed; i++) {
        const char *p = chunks[i], *end = chunks[i] + lengths[i];
        while (p < end && !failed) {
            const char *newline = memchr(p, '\n', (size_t)(end - p));
            if (newline == NULL) {
                failed = carry(&held, &held_length, &held_room, p, end);
                break;
            }
            if (held_length > 0) {
                failed = carry(&held, &held_length, &held_room, p, newline) ||
                         held_line(&m, held, held_length);
                held_length = 0;
            } else {
                failed = line(&m, p, newline);
            }
            p = newline + 1;
        }
    }
    if (!failed && held_length > 0) failed = held_line(&m, held, held_length);
    free(held);
    return failed ? -1 : (long long)m.rows;
}
