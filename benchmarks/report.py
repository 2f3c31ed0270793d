"""Turn ``results.json`` into ``RESULTS.md`` and ``results.png``.

    .venv/bin/python -m benchmarks.report [benchmarks/results.json]

``benchmarks/commentary.md``, when present, is copied in after the targets:
notes a person wrote about experiments outside the run.

Ratios are taken round by round (the servers ran back to back in the same
round) and the median of those ratios is reported, so slow drifts in the
machine's load cancel out. "ours" is the server as it ships, predicting with its
compiled trees; "ours (LightGBM)" is the same server with
``MODEL_COMPILED_PREDICTOR=false``, the server before them.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OURS, OURS_LIBRARY, REFERENCE = "ours", "ours (LightGBM)", "reference"
SERVERS = (REFERENCE, OURS_LIBRARY, OURS)
LABELS = {REFERENCE: "reference", OURS_LIBRARY: "ours (LightGBM)", OURS: "ours (compiled trees)"}
# Each of our servers' in-process ceilings: (predict with 1 thread, the whole job with no HTTP).
CEILING_KEYS = {
    OURS: ("compiled 1 thread", "compiled no HTTP"),
    OURS_LIBRARY: ("1 thread", "no HTTP"),
}
SMALL_TARGET_SCENARIO = "1 record, 8 connections"
MID_SCENARIO = "500 records, 8 connections"
BIG_SCENARIO = "5 MB, 8 connections"
BIG_JSON_SCENARIO = "5 MB, JSON answers, 8 connections"
JSON_ENCODE_STAGE = "encode (JSON labels and probabilities)"
# A batch transform run during which the rest of the machine took less CPU than this had
# the CPUs to itself.
QUIET_REST_CPU_SECONDS = 1.0
# A capped streaming run that used this share of its CPU quota was bound by it.
QUOTA_BOUND = 0.9


@dataclass(frozen=True)
class Target:
    """One line of the issue's targets and whether this run met it."""

    name: str
    wanted: str
    measured: str
    met: bool


def median(values: list[float]) -> float:
    return statistics.median(values)


def per_round(results: dict[str, Any], scenario: str, key: str) -> dict[str, list[float]]:
    return {name: [run[key] for run in runs] for name, runs in results["runs"][scenario].items()}


def round_ratios(
    results: dict[str, Any], scenario: str, key: str, base: str = REFERENCE
) -> list[float]:
    """Ours / ``base`` for ``key``, one per round."""
    values = per_round(results, scenario, key)
    return [a / b for a, b in zip(values[OURS], values[base], strict=True)]


def own_round_ratios(
    results: dict[str, Any], scenario: str, baseline: str, key: str
) -> list[float]:
    """Ours in ``scenario`` / ours in ``baseline`` for ``key``, one per round."""
    ours, base = (per_round(results, name, key)[OURS] for name in (scenario, baseline))
    return [a / b for a, b in zip(ours, base, strict=True)]


def compared(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The scenarios every server ran (the reference answers CSV only)."""
    return [s for s in results["scenarios"] if REFERENCE in results["runs"][s["name"]]]


def answer_formats(results: dict[str, Any]) -> dict[str, list[str]]:
    """Per payload, our CSV scenario and the scenarios that asked for other answers."""
    found: dict[str, list[str]] = {}
    for scenario in results["scenarios"]:
        if scenario.get("accept", "text/csv") != "text/csv":
            baseline = f"{scenario['payload']}, {scenario['connections']} connections"
            found.setdefault(baseline, []).append(scenario["name"])
    return found


def ratio(results: dict[str, Any], scenario: str, key: str, base: str = REFERENCE) -> float:
    """Median over rounds of ours / ``base`` for ``key``."""
    return median(round_ratios(results, scenario, key, base))


def spread(values: list[float], digits: int, passes: Callable[[float], bool]) -> str:
    """A ratio target's median, its range over the rounds, and how many rounds missed it."""
    text = f"{median(values):.{digits}f}x"
    if len(values) > 1:
        missed = sum(not passes(value) for value in values)
        verdict = f"; {missed} of {len(values)} missed it" if missed else ""
        text += f" (rounds {min(values):.{digits}f} to {max(values):.{digits}f}{verdict})"
    return text


def workers(results: dict[str, Any]) -> int:
    return int(results["arguments"]["workers"])


def ceiling_rate(
    round_: dict[str, dict[str, float]], batch: str, results: dict[str, Any], server: str = OURS
) -> float:
    """What ``server``'s workers would reach if predicting were all they did: its
    predictor's 1-thread rate x workers.

    Not the OpenMP all-CPU rate: on a busy machine one process's OpenMP team
    thrashes (it measured below the 1-thread rate), while each server worker
    predicts with one thread, exactly like this.
    """
    return round_[batch][CEILING_KEYS[server][0]] * workers(results)


def median_ceiling(results: dict[str, Any], batch: str, server: str = OURS) -> float:
    return median([ceiling_rate(round_, batch, results, server) for round_ in results["ceilings"]])


def no_http_ratio(results: dict[str, Any], server: str = OURS) -> float | None:
    """Median over rounds of the no-HTTP 5 MB rate / that round's ceiling (None: not measured)."""
    key = CEILING_KEYS[server][1]
    if not all(key in round_["5 MB"] for round_ in results["ceilings"]):
        return None
    return median(
        [
            round_["5 MB"][key] / ceiling_rate(round_, "5 MB", results, server)
            for round_ in results["ceilings"]
        ]
    )


def ceiling_ratios(
    results: dict[str, Any], server: str = OURS, of: str | None = None
) -> list[float]:
    """``server``'s 5 MB records/s / that round's ceiling of ``of``'s predictor (default: its
    own), one per round."""
    records = per_round(results, BIG_SCENARIO, "records_per_s")[server]
    ceilings = [
        ceiling_rate(round_, "5 MB", results, of or server) for round_ in results["ceilings"]
    ]
    return [a / b for a, b in zip(records, ceilings, strict=True)]


def server_big_records_per_s(results: dict[str, Any]) -> float:
    """Our server's records/s on its largest requests: the median over rounds at 5 MB."""
    return median(per_round(results, BIG_SCENARIO, "records_per_s")[OURS])


def ceiling_ratio(results: dict[str, Any], server: str = OURS, of: str | None = None) -> float:
    """Median over rounds of ``server``'s 5 MB records/s / that round's ceiling."""
    return median(ceiling_ratios(results, server, of))


def memory_ratio(results: dict[str, Any], server: str, state: str) -> float:
    memory = results["footprint"]["memory_mib"][server]
    return memory["4"][state] / memory["1"][state]


def _ratio_target(
    name: str, values: list[float], bound: float, digits: int, at_most: bool = False
) -> Target:
    """A target on a per-round ratio, judged on its median: at least (or at most) ``bound``."""

    def passes(value: float) -> bool:
        return value <= bound if at_most else value >= bound

    wanted = f"{'≤' if at_most else '≥'} {bound:g}x"
    return Target(name, wanted, spread(values, digits, passes), passes(median(values)))


# The compiled trees' targets: ours over ours (LightGBM) in the same round, no tolerance (as
# the other targets): (name, scenario, key, bound, digits, at most).
COMPILED_TARGETS = (
    ("compiled vs LightGBM server, 5 MB: records/s", BIG_SCENARIO, "records_per_s", 2.5, 2, False),
    (
        "compiled vs LightGBM server, 500 records: records/s",
        MID_SCENARIO,
        "records_per_s",
        2.0,
        2,
        False,
    ),
    (
        "compiled vs LightGBM server, 1 record, 8 connections: requests/s",
        SMALL_TARGET_SCENARIO,
        "requests_per_s",
        1.0,
        2,
        False,
    ),
    (
        "compiled vs LightGBM server, 1 record, 8 connections: p99",
        SMALL_TARGET_SCENARIO,
        "p99_ms",
        1.0,
        3,
        True,
    ),
)


def compiled_targets(results: dict[str, Any]) -> list[Target]:
    return [
        _ratio_target(
            name, round_ratios(results, scenario, key, OURS_LIBRARY), bound, digits, at_most
        )
        for name, scenario, key, bound, digits, at_most in COMPILED_TARGETS
    ]


def targets(results: dict[str, Any]) -> list[Target]:
    rps = round_ratios(results, SMALL_TARGET_SCENARIO, "requests_per_s")
    p99 = round_ratios(results, SMALL_TARGET_SCENARIO, "p99_ms")
    big = round_ratios(results, BIG_SCENARIO, "records_per_s")
    share = ceiling_ratios(results)
    cold = results["footprint"]["cold_start_s"][OURS]
    memory_busy = memory_ratio(results, OURS, "after_5mb")
    memory_idle = memory_ratio(results, OURS, "idle")
    stages = results["profile"]["stages_ms"]
    encode_share = stages[JSON_ENCODE_STAGE] / stages["predict (1 thread)"]
    json_big = own_round_ratios(results, BIG_JSON_SCENARIO, BIG_SCENARIO, "records_per_s")
    found = [
        _ratio_target("1 record, 8 connections: requests/s vs reference", rps, 3, 2),
        _ratio_target("1 record, 8 connections: p99 vs reference", p99, 0.25, 3, at_most=True),
        _ratio_target("5 MB: records/s vs reference", big, 1.5, 2),
        _ratio_target(
            "5 MB: records/s vs in-process predict (compiled trees, 1 thread x workers)",
            share,
            0.75,
            2,
        ),
        Target(
            "5 MB: encoding the JSON answer vs predicting it (1 thread, in process)",
            "≤ 0.2x",
            f"{encode_share:.3f}x ({stages[JSON_ENCODE_STAGE]:.1f} ms vs "
            f"{stages['predict (1 thread)']:.1f} ms)",
            encode_share <= 0.2,
        ),
        _ratio_target("5 MB: records/s with JSON answers vs with CSV answers", json_big, 0.9, 2),
        Target("cold start to the first /ping 200", "≤ 1.5 s", f"{cold:.2f} s", cold <= 1.5),
        Target(
            "memory, 4 workers vs 1 worker (after 5 MB requests; idle)",
            "≤ 1.5x",
            f"{memory_busy:.2f}x; {memory_idle:.2f}x",
            max(memory_busy, memory_idle) <= 1.5,
        ),
    ]
    found += compiled_targets(results)
    if "lambda" in results:
        peak = results["lambda"]["peak_rss_mb"]
        found.append(
            Target(
                f"client Lambda peak memory, {results['lambda']['megabytes']} MiB file",
                "≤ 256 MB",
                f"{peak:.0f} MB",
                peak <= 256,
            )
        )
    return found


def _pair_table(results: dict[str, Any], base: str, base_label: str, label: str) -> list[str]:
    """Ours beside ``base``, scenario by scenario, over every scenario both ran."""
    lines = [
        f"| scenario | {base_label} req/s | {label} req/s | ratio* | {base_label} records/s | "
        f"{label} records/s | {base_label} p50 / p90 / p99 ms | {label} p50 / p90 / p99 ms | "
        "p99 ratio* |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in results["scenarios"]:
        name = scenario["name"]
        if base not in results["runs"][name]:
            continue
        rps = per_round(results, name, "requests_per_s")
        records = per_round(results, name, "records_per_s")
        latency = {
            server: " / ".join(
                f"{_latency(results, name, server, key):.1f}"
                for key in ("p50_ms", "p90_ms", "p99_ms")
            )
            for server in (base, OURS)
        }
        lines.append(
            f"| {name} | {median(rps[base]):,.0f} | {median(rps[OURS]):,.0f} | "
            f"{ratio(results, name, 'requests_per_s', base):.2f}x | "
            f"{median(records[base]):,.0f} | {median(records[OURS]):,.0f} | "
            f"{latency[base]} | {latency[OURS]} | "
            f"{ratio(results, name, 'p99_ms', base):.3f}x |"
        )
    return lines


def _answers_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| scenario | ours req/s | ours records/s | vs CSV answers* | p50 / p90 / p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for baseline, others in answer_formats(results).items():
        for name in (baseline, *others):
            latency = " / ".join(
                f"{median(per_round(results, name, key)[OURS]):.1f}"
                for key in ("p50_ms", "p90_ms", "p99_ms")
            )
            versus = median(own_round_ratios(results, name, baseline, "records_per_s"))
            lines.append(
                f"| {name} | {median(per_round(results, name, 'requests_per_s')[OURS]):,.0f} | "
                f"{median(per_round(results, name, 'records_per_s')[OURS]):,.0f} | "
                f"{versus:.2f}x | {latency} |"
            )
    return lines


def _ceiling_table(results: dict[str, Any]) -> list[str]:
    count = workers(results)
    cpus = results["machine"]["cpus"]
    lines = [
        f"| batch | LightGBM predict, 1 thread | x {count} workers (LightGBM's ceiling) | "
        f"one LightGBM predict call with {cpus} OpenMP threads | compiled trees, 1 thread | "
        f"x {count} workers (the compiled ceiling) | compiled / LightGBM* |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in results["payloads"]:
        rounds = results["ceilings"]
        one = median([round_[batch]["1 thread"] for round_ in rounds])
        every = median([round_[batch]["all CPUs"] for round_ in rounds])
        compiled = median([round_[batch]["compiled 1 thread"] for round_ in rounds])
        speedup = median([r[batch]["compiled 1 thread"] / r[batch]["1 thread"] for r in rounds])
        lines.append(
            f"| {batch} | {one:,.0f} | {one * count:,.0f} | {every:,.0f} | {compiled:,.0f} | "
            f"{compiled * count:,.0f} | {speedup:.2f}x |"
        )
    lines += [
        "",
        "Records/s, measured in this process between the load runs of every round. A "
        "ceiling is a predictor's 1-thread rate times the worker count: what a server's "
        "workers, one thread each, would reach if predicting were all they did. \\* the "
        "median of the per-round ratios.",
        "",
        "At 5 MB, ours reached "
        f"**{ceiling_ratio(results):.2f}x** the compiled ceiling "
        f"({ceiling_ratio(results, OURS, OURS_LIBRARY):.2f}x LightGBM's); ours (LightGBM) "
        f"reached **{ceiling_ratio(results, OURS_LIBRARY):.2f}x** LightGBM's ceiling.",
    ]
    for server, predictor, whose in (
        (OURS_LIBRARY, "LightGBM", "LightGBM's"),
        (OURS, "the compiled trees", "the compiled trees'"),
    ):
        share = no_http_ratio(results, server)
        if share is None:
            continue
        key = CEILING_KEYS[server][1]
        no_http = median([round_["5 MB"][key] for round_ in results["ceilings"]])
        lines += [
            "",
            f"A worker's whole job on the 5 MB body without any HTTP (our CSV parser, "
            f"{predictor}, CSV encoding), on {results['no_http_threads']} threads of this "
            f"process: {no_http:,.0f} records/s, **{share:.2f}x {whose} ceiling**, a "
            "bound no such server passes on this machine.",
        ]
    lines += [
        "",
        "The whole job can come near 1.0x although it also parses and encodes: its threads "
        "keep both CPUs busier than two 1-thread predict loops do (one predict call with "
        "every CPU also beats the ceiling, in the table).",
    ]
    return lines


def _footprint_lines(results: dict[str, Any]) -> list[str]:
    footprint = results["footprint"]
    memory = footprint["memory_mib"]
    cold = footprint["cold_start_s"]
    lines = [
        "| | reference | ours (LightGBM) | ours (compiled trees) |",
        "|---|---:|---:|---:|",
        "| cold start: process start → first `/ping` 200 (median) | "
        + " | ".join(f"{cold[server]:.2f} s" for server in SERVERS)
        + " |",
    ]
    for workers in ("1", "4"):
        for state, label in (("idle", "idle after start"), ("after_5mb", "after 5 MB requests")):
            lines.append(
                f"| memory (PSS, whole process tree), {workers} worker(s), {label} | "
                + " | ".join(f"{memory[server][workers][state]:.0f} MiB" for server in SERVERS)
                + " |"
            )
    for state, label in (("after_5mb", "after 5 MB requests"), ("idle", "idle")):
        lines.append(
            f"| 4 workers / 1 worker, {label} | "
            + " | ".join(f"{memory_ratio(results, server, state):.2f}x" for server in SERVERS)
            + " |"
        )
    size = footprint["compiled_size"]
    lines += [
        "",
        f"Ours' cold starts alternated with ours (LightGBM)'s, 5 each (the reference's: 3): "
        f"with the compiled trees the server starts in **{cold[OURS]:.2f} s against "
        f"{cold[OURS_LIBRARY]:.2f} s** ({cold[OURS] - cold[OURS_LIBRARY]:+.2f} s, "
        f"{cold[OURS] / cold[OURS_LIBRARY]:.2f}x). Its master loads the model's shared "
        "library (a few milliseconds) instead of importing LightGBM (and the scipy it pulls "
        "in) and parsing `model.txt`: the compiled server never loads LightGBM, which is also "
        "why its memory is lower.",
        "",
        "What they add on disk (static, not an image build; measured in this run): to the "
        "inference image, nothing (the server loads the library with ctypes); to the training "
        f"image, the compiler: **llvmlite {size['llvmlite_mib']:.0f} MiB** and lleaves "
        f"{size['lleaves_mib']:.0f} MiB installed (`du -sm` of each package's folder in "
        "`.venv/lib/python3.11/site-packages/`, the versions `containers/requirements-"
        "training-lightgbm.txt` pins) and Debian's binutils for its linker; to the model "
        "folder, the shared library training writes, "
        f"`model.compiled.so`, **{size['library_kib']:.0f} KiB**, with its record "
        f"`compiled.json` ({size['record_kib']:.1f} KiB), for this model.",
    ]
    return lines


def _lambda_lines(results: dict[str, Any]) -> list[str]:
    if "lambda" not in results:
        return ["Not measured in this run (`--skip-lambda`)."]
    run = results["lambda"]
    return [
        f"`benchmarks/client_memory.py --megabytes {run['megabytes']} --format csv --repeat 1`: "
        f"the handler, in a fresh process like a cold Lambda, read a {run['megabytes']} MiB CSV "
        f"object from moto's S3 server and scored {run['records']:,} records in "
        f"{run['requests']} requests through the local SageMaker runtime adapter and our server "
        f"(1 worker) in {run['seconds']:.1f} s: **{run['records_per_s']:,.0f} records/s**, "
        f"**peak RSS {run['peak_rss_mb']:.0f} MB** (a handler process that only imports and "
        f"builds its clients peaks at {run['baseline_rss_mb']:.0f} MB).",
    ]


def _batch_lines(results: dict[str, Any]) -> list[str]:
    """The batch transform run: stages, records/s against our server's, memory, CPU."""
    if "batch_transform" not in results:
        return ["Not measured in this run (`--skip-lambda`)."]
    run = results["batch_transform"]
    median_ = run["median"]
    server = run["server_peak_rss_mb"]
    stand_ins = run["stand_ins_peak_rss_mb"]
    big = server_big_records_per_s(results)
    ceiling = median([ceiling_rate(round_, "5 MB", results) for round_ in results["ceilings"]])
    cpus = results["machine"]["cpus"]
    window = median_["client_start_s"] + median_["job_s"]
    return [
        f"`{run['command']}` ({run['finished_utc']}; medians of {len(run['runs'])} runs): a "
        f"{run['bytes'] / 2**20:,.0f} MiB CSV file, {run['records']:,} records after the "
        "bundled header line, in moto's S3 server (uploading it took "
        f"{run['upload_s']:.1f} s, not counted). The client handler, in a fresh process like "
        "a cold Lambda, starts the job; `local.batch_transform` plays SageMaker and sends our "
        f"server, in batch mode with {run['server_workers']} workers as on the default "
        f"`ml.m5.large`, {median_['mini_batches']:.0f} mini-batches of at most "
        f"{run['max_payload_mb']} MB, as many at a time as its `/execution-parameters` asks "
        "(one per worker); `transform_completion.handler`, in a fresh process, streams the "
        "job's output into `.out`. Every line of every run's `.out` was checked against the "
        "label the model predicts in process for that record.",
        "",
        "| stage | seconds | records/s |",
        "|---|---:|---:|",
        f"| client start (a cold process stages the request and starts the job) | "
        f"{median_['client_start_s']:.1f} | |",
        f"| job (`CreateTransformJob` to the job's end: read S3, mini-batches, answers "
        f"written) | {median_['job_s']:.1f} | {median_['job_records_per_s']:,.0f} |",
        f"| publish (a cold `transform_completion` streams the answers into `.out`) | "
        f"{median_['publish_s']:.1f} | |",
        f"| **end to end** (the client's start to `.out` published) | "
        f"**{median_['end_to_end_s']:.1f}** | **{median_['records_per_s']:,.0f}** |",
        "",
        f"Against our server's own rate on its largest requests in the load rounds above "
        f"({BIG_SCENARIO}, {big:,.0f} records/s): the job reached "
        f"**{median_['job_records_per_s'] / big:.2f}x**, end to end "
        f"**{median_['records_per_s'] / big:.2f}x** (against the in-process ceiling of "
        f"{ceiling:,.0f} records/s: {median_['job_records_per_s'] / ceiling:.2f}x and "
        f"{median_['records_per_s'] / ceiling:.2f}x). The stages overlap a little: the job "
        "starts inside the client's stage. Each run's job, with the CPU seconds the rest of "
        "the machine took meanwhile: "
        + ", ".join(
            f"{one['job_s']:.1f} s ({one['job_cpu_seconds']['rest of the machine']:.1f})"
            for one in run["runs"]
        )
        + ".",
        *_quiet_batch_runs(run, big),
        "",
        f"Publishing took {median_['transform_cpu_seconds']:.1f} CPU seconds for "
        f"{run['records']:,} records: with Lambda's share for 512 MB (512/1769 of a vCPU), "
        f"about {median_['transform_cpu_seconds'] * 1769 / 512:.0f} s.",
        "",
        "| process | peak RSS (`VmHWM`) |",
        "|---|---:|",
        f"| client handler (starts the job) | {median_['client_peak_rss_mb']:.0f} MB |",
        f"| transform handler (publishes `.out`) | {median_['transform_peak_rss_mb']:.0f} MB |",
        f"| model server master | {server['master']:.0f} MB |",
        f"| model server workers | {' + '.join(f'{mb:.0f}' for mb in server['workers'])} = "
        f"{server['workers_sum']:.0f} MB |",
        *(f"| {name}, a local stand-in | {mb:.0f} MB |" for name, mb in stand_ins.items()),
        "",
        "The workers' sum counts the model's pages, shared after the fork, once per worker. "
        "The stand-ins do not run in AWS: moto holds the object in memory, and the benchmark "
        "process holds the labels it checks the output against and, playing SageMaker, every "
        "answer of a job until it writes the job's output.",
        "",
        f"CPU seconds from the client's start to the job's end ({window:.1f} s on {cpus} CPUs, "
        f"{window * cpus:.1f} CPU-seconds; medians):",
        "",
        "| process | CPU seconds |",
        "|---|---:|",
        *(f"| {name} | {cpu:.1f} |" for name, cpu in median_["job_cpu_seconds"].items()),
        "",
        "The rest of the machine is every other process and the kernel's own work (loopback "
        "copies among them): what competed with the run for the CPUs. In AWS, the job's "
        "instance runs only the container, and the job also waits minutes for that instance "
        "to start, which is not played here.",
    ]


def _quiet_batch_runs(run: dict[str, Any], big: float) -> list[str]:
    """The medians of the runs that had the CPUs to themselves, when only some did."""
    quiet = [
        one
        for one in run["runs"]
        if one["job_cpu_seconds"]["rest of the machine"] < QUIET_REST_CPU_SECONDS
    ]
    if not quiet or len(quiet) == len(run["runs"]):
        return []
    job = median([one["job_records_per_s"] for one in quiet])
    whole = median([one["records_per_s"] for one in quiet])
    return [
        "",
        f"In the {len(quiet)} of {len(run['runs'])} runs during which the rest of the machine "
        f"took under {QUIET_REST_CPU_SECONDS:g} CPU second, the job took "
        f"{median([one['job_s'] for one in quiet]):.1f} s, **{job:,.0f} records/s, "
        f"{job / big:.2f}x** our server's rate, and the whole path "
        f"{median([one['end_to_end_s'] for one in quiet]):.1f} s, **{whole:,.0f} records/s, "
        f"{whole / big:.2f}x**.",
    ]


def _streaming_lines(results: dict[str, Any]) -> list[str]:
    """The client's streaming rate per vCPU, capped at Lambda's CPU shares."""
    if "streaming" not in results:
        return ["Not measured in this run (`--skip-lambda`)."]
    run = results["streaming"]
    if "skipped" in run:
        return [f"Not measured: {run['skipped']}."]
    lines = [
        f"`{run['command']}`: the client handler, in a fresh process per run like a cold "
        f"Lambda, streamed a {run['bytes'] / 2**20:,.0f} MiB CSV file ({run['records']:,} "
        "records) from moto's S3 server through the runtime adapter and our server (1 worker), "
        "inside a cgroup v1 `cpu` group whose CFS quota capped it at a share of one CPU, as "
        "Lambda gives a function 1/1769 of a vCPU per MB. The shares alternate within each "
        "repeat; medians:",
        "",
        "| CPU share | runs | MiB/s | **MiB/s per vCPU** | whole invocation (cold start "
        "included) | MiB/s per vCPU, whole invocation | CPU used / allowed | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for share in run["shares"]:
        lines.append(
            f"| {share['cpu_share']:.4f} | {share['runs']} | {share['median_mib_per_s']:.1f} | "
            f"**{share['median_mib_per_s_per_vcpu']:.1f}** | {share['median_seconds']:.1f} s | "
            f"{share['median_whole_mib_per_s_per_vcpu']:.1f} | "
            f"{share['median_cpu_of_allowed']:.2f} | {share['median_peak_rss_mb']:.0f} MB |"
        )
    lines += [
        "",
        "MiB/s is the file's size over the handler's time for the object; the whole "
        "invocation adds the imports and clients of a cold start. CPU used / allowed is the "
        "child's CPU time over its quota for the run: near 1, the quota bound it, as on "
        "Lambda; well below 1, something else did (our server, moto and the adapter share "
        "this machine's CPUs with it). `lambda_fn/client_config.py`'s "
        "`STREAM_BYTES_PER_VCPU_SECOND` takes the per-vCPU rate of a run the quota bound.",
        "",
    ]
    bound = [share for share in run["shares"] if share["median_cpu_of_allowed"] >= QUOTA_BOUND]
    if not bound:
        return [*lines, f"No share used {QUOTA_BOUND:.0%} of its quota: none measures the client."]
    return [
        *lines,
        f"Bound by the quota (at least {QUOTA_BOUND:.0%} of it used): "
        + "; ".join(
            f"at {share['cpu_share']:.4f} of a vCPU, **{share['median_mib_per_s_per_vcpu']:.1f} "
            f"MiB/s per vCPU** ({share['median_whole_mib_per_s_per_vcpu']:.1f} with the cold "
            "start)"
            for share in bound
        )
        + ".",
    ]


def _profile_lines(results: dict[str, Any]) -> list[str]:
    stages = results["profile"]["stages_ms"]
    whole = stages["whole app call"]
    predict = stages["predict (1 thread)"]
    records = results["payloads"]["5 MB"]["records"]
    lines = [
        f"One 5 MB request ({records:,} records) through our ASGI app in process, one "
        "predict thread, as each worker runs it (median of 5). The app predicts with the "
        "compiled trees, as ours does; the LightGBM rows are the same predict and the same "
        "whole call with LightGBM, as ours (LightGBM) does:",
        "",
        "| stage | ms | share of the whole call (CSV answer) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {ms:.1f} | {ms / whole:.0%} |" for name, ms in stages.items()]
    lines += [
        "",
        f"So a worker can at best serve {records / whole * 1e3:,.0f} records/s against "
        f"{records / predict * 1e3:,.0f} for `predict` alone "
        f"({predict / whole:.0%} of the request is the model itself); with LightGBM, "
        f"{records / stages['whole app call, LightGBM'] * 1e3:,.0f} against "
        f"{records / stages['predict (1 thread, LightGBM)'] * 1e3:,.0f}.",
        "",
        f"Live, py-spy sampled ours' (compiled trees) {results['arguments']['workers']} "
        "workers at 100 Hz for 5 s "
        "while wrk sent them 5 MB requests on 8 connections (share of the samples in which a "
        "worker thread was busy):",
        "",
        "| stage | share |",
        "|---|---:|",
        *(f"| {stage} | {share:.0%} |" for stage, share in results["profile"]["py_spy"].items()),
        "",
        "<details><summary>pyinstrument call tree (5 requests)</summary>",
        "",
        "```",
        results["profile"]["pyinstrument"].strip(),
        "```",
        "",
        "</details>",
    ]
    return lines


def _latency(results: dict[str, Any], scenario: str, server: str, key: str) -> float:
    return median(per_round(results, scenario, key)[server])


def _lopsided(results: dict[str, Any], scenario: str) -> str:
    """A clause saying whether one worker held most connections in most rounds."""
    splits = [run.get("connections_per_worker", []) for run in results["runs"][scenario][OURS]]
    lopsided = [split for split in splits if split and split[0] >= 0.75 * sum(split)]
    if len(lopsided) * 2 > len(splits):
        return (
            f": in {len(lopsided)} of {len(splits)} rounds one worker held at least 3/4 of "
            "them, so its event loop served them while the other worker had little to do"
        )
    return ""


def _bounds(results: dict[str, Any], found: list[Target]) -> list[str]:
    """For each missed target: by how much, and what the measurements say bounds it."""
    # Missed on the median, or in some rounds: a target met only just is explained too.
    missed = {target.name for target in found if not target.met or "missed it" in target.measured}
    lines = []
    small = SMALL_TARGET_SCENARIO
    if any(name.startswith("1 record, 8 connections") for name in missed):
        ours = {k: _latency(results, small, OURS, k) for k in ("p50_ms", "p90_ms", "p99_ms")}
        ref = {k: _latency(results, small, REFERENCE, k) for k in ("p50_ms", "p90_ms", "p99_ms")}
        alone = _latency(results, "1 record, 1 connection", OURS, "p99_ms")
        lines.append(
            f"- **1 record, 8 connections.** Ours: p50 {ours['p50_ms']:.1f} ms, p90 "
            f"{ours['p90_ms']:.1f} ms, p99 {ours['p99_ms']:.1f} ms; reference: "
            f"{ref['p50_ms']:.1f} / {ref['p90_ms']:.1f} / {ref['p99_ms']:.1f} ms. The p99 "
            f"target is {ref['p99_ms'] / 4:.1f} ms; ours is "
            f"{ours['p99_ms'] / (ref['p99_ms'] / 4):.1f}x that. With one connection our p99 "
            f"is {alone:.1f} ms. wrk's 8 connections were split "
            + ", ".join(
                "+".join(map(str, run.get("connections_per_worker", [])))
                for run in results["runs"][small][OURS]
            )
            + f" among our workers in the rounds{_lopsided(results, small)}. The "
            f"{results['machine']['cpus']} CPUs also run wrk and whatever else the machine "
            "runs (see the load average below)."
        )
    if any(name.startswith("5 MB: records/s vs in-process") for name in missed):
        live = results["profile"]["py_spy"]
        stages = results["profile"]["stages_ms"]
        no_http = no_http_ratio(results)
        bound = (
            f"The same work with no HTTP at all reached {no_http:.2f}x (the ceiling section "
            "below), so the server itself costs the difference between the two. "
            if no_http is not None
            else ""
        )
        lines.append(
            f"- **5 MB vs the ceiling.** Ours reached {ceiling_ratio(results):.2f}x. {bound}"
            f"Under load our workers spent {live['predict']:.0%} of their busy "
            f"time in the compiled trees' predict, {live['parse (parse_csv)']:.0%} parsing CSV and "
            f"{live['read the request body']:.0%} reading the 4.8 MB body (py-spy table "
            "below; gunicorn's own HTTP handling is the rest). In process, parsing takes "
            f"{stages['parse (decoders.parse_csv)']:.1f} ms against "
            f"{stages['predict (1 thread)']:.1f} ms of predict per request. The "
            f"{results['machine']['cpus']} CPUs also run wrk, which writes 4.8 MB per "
            "request, and the kernel's loopback copies of it; the ceiling is measured with "
            "both CPUs to itself."
        )
    if any("JSON answer" in name for name in missed):
        stages = results["profile"]["stages_ms"]
        lines.append(
            f"- **JSON answers.** In process, one 5 MB request takes "
            f"{stages['whole app call, JSON answer']:.1f} ms with a JSON answer and "
            f"{stages['whole app call']:.1f} ms with a CSV answer; encoding alone takes "
            f"{stages[JSON_ENCODE_STAGE]:.1f} ms (JSON) against "
            f"{stages['encode (CSV labels)']:.1f} ms (CSV) and "
            f"{stages['predict (1 thread)']:.1f} ms of predict. Against LightGBM's predict "
            f"({stages['predict (1 thread, LightGBM)']:.1f} ms) the same JSON encoding is "
            f"{stages[JSON_ENCODE_STAGE] / stages['predict (1 thread, LightGBM)']:.3f}x: the "
            "compiled trees shrank the predict it is weighed against, not the encoding. A "
            "JSON answer also carries every probability, many times the bytes of a CSV one, "
            "for wrk to read on the same CPUs."
        )
    if any(name.startswith("memory") for name in missed):
        memory = results["footprint"]["memory_mib"][OURS]
        per_worker = {
            state: (memory["4"][state] - memory["1"][state]) / 3 for state in ("idle", "after_5mb")
        }
        library = results["footprint"]["memory_mib"][OURS_LIBRARY]
        lines.append(
            f"- **Memory.** Each extra worker adds {per_worker['idle']:.0f} MiB when idle and "
            f"{per_worker['after_5mb']:.0f} MiB once it has served 5 MB requests, against "
            f"{memory['1']['idle']:.0f} MiB for the master and one idle worker: the model "
            "is shared; what grows is each worker's heap after parsing 5 MB bodies. The "
            "ratio is of two small numbers: 4 workers take "
            f"{memory['4']['after_5mb']:.0f} MiB after 5 MB requests, where ours (LightGBM) "
            f"takes {library['4']['after_5mb']:.0f} MiB with 4 and "
            f"{library['1']['after_5mb']:.0f} MiB with 1 (it loads LightGBM and scipy; the "
            "compiled server loads neither)."
        )
    if any(name.startswith("cold start") for name in missed):
        lines.append(
            f"- **Cold start.** {results['footprint']['cold_start_s'][OURS]:.2f} s, measured "
            "by polling `/ping` every 50 ms from process start (Python start, numpy, "
            "the model's imports, the model and its compiled trees loaded, fork, one warm-up "
            "prediction per worker), while "
            "the rest of the machine was busy as described below."
        )
    if "5 MB: records/s vs reference" in missed:
        ceiling = median_ceiling(results, "5 MB", OURS_LIBRARY)
        records = per_round(results, BIG_SCENARIO, "records_per_s")
        reference_share = median(records[REFERENCE]) / ceiling
        lines.append(
            f"- **5 MB vs the reference.** The reference predicts with LightGBM: it reached "
            f"{reference_share:.2f}x of LightGBM's ceiling "
            f"({median(records[REFERENCE]):,.0f} of {ceiling:,.0f} records/s), so 1.5x the "
            f"reference means {1.5 * reference_share:.2f}x of that ceiling; ours reached "
            f"{median(records[OURS]) / ceiling:.2f}x of it (ours (LightGBM): "
            f"{median(records[OURS_LIBRARY]) / ceiling:.2f}x); what bounds ours is in the "
            "points on the ceiling and on the compiled trees."
        )
    if "1 record, 8 connections: requests/s vs reference" in missed:
        rounds = ", ".join(
            f"{'+'.join(map(str, run.get('connections_per_worker', [])))}: "
            f"{run['requests_per_s']:,.0f}"
            for run in results["runs"][small][OURS]
        )
        lines.append(
            "- **1 record vs the reference.** Our requests/s per round, by how wrk's 8 "
            f"connections were split among our workers: {rounds} (the reference: "
            f"{median(per_round(results, small, 'requests_per_s')[REFERENCE]):,.0f}). When "
            "one worker holds every connection, only its process serves; when both hold "
            "some, both CPUs do. Spreading connections over the workers is the lever (notes "
            "below)."
        )
    if any(name.startswith("client Lambda") for name in missed):
        lines.append("- **Client Lambda.** See the Lambda section below.")
    lines += _compiled_bounds(results, found, missed)
    return lines or ["Every target was met in every round of this run."]


def predict_bound(results: dict[str, Any], scenario: str) -> dict[str, float]:
    """The best ours / ours (LightGBM) ratio if only predict got faster (Amdahl).

    A LightGBM worker spends ``workers / requests_per_s`` seconds per request; of those,
    predict takes ``records / LightGBM's 1-thread rate`` and the compiled trees take
    ``records / their rate`` (this run's medians); the rest (HTTP, parsing, encoding, the
    CPUs wrk takes) is left as it was. Milliseconds per request and per worker.
    """
    batch = next(s["payload"] for s in results["scenarios"] if s["name"] == scenario)
    records = results["payloads"][batch]["records"]
    rounds = results["ceilings"]
    request = (
        1e3
        * workers(results)
        / median(per_round(results, scenario, "requests_per_s")[OURS_LIBRARY])
    )
    library = 1e3 * records / median([round_[batch]["1 thread"] for round_ in rounds])
    compiled = 1e3 * records / median([round_[batch]["compiled 1 thread"] for round_ in rounds])
    rest = max(request - library, 0.0)
    return {
        "request_ms": request,
        "library_ms": library,
        "compiled_ms": compiled,
        "rest_ms": rest,
        "bound": request / (rest + compiled),
    }


def _compiled_bounds(results: dict[str, Any], found: list[Target], missed: set[str]) -> list[str]:
    """For each compiled-trees target missed: by how much, the predict-only bound, and for
    5 MB where the compiled server's time goes (its profiles)."""
    lines = []
    by_name = {target.name: target for target in found}
    for name, scenario, key, bound, _, at_most in COMPILED_TARGETS:
        if name not in missed:
            continue
        values = round_ratios(results, scenario, key, OURS_LIBRARY)
        short = median(values) / bound - 1 if at_most else 1 - median(values) / bound
        how = (
            f"missed by {short:.0%} on the median" if not by_name[name].met else "met on the median"
        )
        shares = predict_bound(results, scenario)
        text = (
            f"- **{name}**: {by_name[name].measured}, {how} (wanted {by_name[name].wanted}). "
            f"A LightGBM worker took {shares['request_ms']:.2f} ms per request, of which "
            f"predict (in process, 1 thread) is {shares['library_ms']:.2f} ms; the compiled "
            f"trees take {shares['compiled_ms']:.2f} ms. "
        )
        if shares["rest_ms"] > 0:
            text += (
                f"Were everything else ({shares['rest_ms']:.2f} ms: HTTP, parsing, encoding, "
                f"the CPUs wrk shares) unchanged, the faster predict alone would make ours "
                f"**{shares['bound']:.2f}x** ours (LightGBM): that unchanged rest, not "
                "predict, is what bounds the ratio."
            )
        else:
            text += (
                "Predict alone measured longer in process than a whole request in the "
                "server (the two were not timed at the same moment on the shared CPUs), so "
                "this run cannot split the request's time this way."
            )
        if scenario == BIG_SCENARIO:
            text += " " + _big_profile_sentence(results)
        elif scenario == SMALL_TARGET_SCENARIO:
            text += (
                " Predict is a sliver of a 1-record request, so the rounds' spread comes from "
                "the run's noise and from how wrk's connections were split among the workers "
                "(listed below the tables), not from the predictor."
            )
        lines.append(text)
    return lines


def _big_profile_sentence(results: dict[str, Any]) -> str:
    """Where the compiled server's 5 MB request goes, from the in-process and live profiles."""
    stages = results["profile"]["stages_ms"]
    live = results["profile"]["py_spy"]
    whole, whole_library = stages["whole app call"], stages["whole app call, LightGBM"]
    no_http = [
        round_["5 MB"]["compiled no HTTP"] / round_["5 MB"]["no HTTP"]
        for round_ in results["ceilings"]
        if "compiled no HTTP" in round_["5 MB"]
    ]
    without_http = (
        f" A worker's whole job with no HTTP (the ceiling section) ran {median(no_http):.2f}x "
        "as fast compiled as with LightGBM, another bound on the server."
        if no_http
        else ""
    )
    return (
        f"In process, one 5 MB request through the app takes {whole:.1f} ms compiled against "
        f"{whole_library:.1f} ms with LightGBM (**{whole_library / whole:.2f}x**): predict "
        f"fell from {stages['predict (1 thread, LightGBM)']:.1f} to "
        f"{stages['predict (1 thread)']:.1f} ms, and parsing the CSV "
        f"({stages['parse (decoders.parse_csv)']:.1f} ms) and encoding "
        f"({stages['encode (CSV labels)']:.1f} ms) did not move. Live, py-spy found the "
        f"compiled workers busy {live['predict']:.0%} in predict, "
        f"{live['parse (parse_csv)']:.0%} parsing, {live['read the request body']:.0%} reading "
        f"the body, {live['gunicorn: sockets, HTTP']:.0%} in gunicorn's HTTP and "
        f"{live['other']:.0%} elsewhere (profile section below): what is left is mostly "
        "not predict, and wrk writing 4.8 MB per request shares the same CPUs." + without_http
    )


def _verdict(target: Target) -> str:
    return "yes" if target.met else "**no**"


def markdown(results: dict[str, Any], commentary: str) -> str:
    machine = results["machine"]
    found = targets(results)
    lines = [
        "# Inference speed: our model server beside the classic container",
        "",
        f"Produced by `{results['command']}` ({results['finished_utc']}, "
        f"{results['wall_seconds'] / 60:.1f} min; arguments "
        + ", ".join(f"{k}={v}" for k, v in results["arguments"].items())
        + "). Every figure is a median; ratios are medians of per-round ratios (each round "
        "runs every server back to back, the order reversed every round, so each pair "
        "swaps which goes first).",
        "",
        "Three servers ran side by side: **ours** is our server as it ships, predicting with "
        "the model's compiled trees (`X-Model-Predictor: compiled`); **ours (LightGBM)** is "
        "the same server with `MODEL_COMPILED_PREDICTOR=false` (`X-Model-Predictor: "
        "library`), the server before the compiled trees; the **reference** is the classic "
        "container. Each server's header was checked before timing. Every target on "
        '"ours" measures the compiled server; the compiled-trees targets compare it with '
        "ours (LightGBM) round by round, with no tolerance, as every other target.",
        "",
        "## Targets",
        "",
        "| target | wanted | measured | met |",
        "|---|---|---|---|",
        *(f"| {t.name} | {t.wanted} | {t.measured} | {_verdict(t)} |" for t in found),
        "",
        "### What bounds the targets missed (on the median or in some rounds)",
        "",
        *_bounds(results, found),
        "",
        commentary.strip(),
        "",
        "![throughput and latency, the reference beside ours with LightGBM and with compiled "
        "trees](results.png)",
        "",
        "## Machine and method",
        "",
        f"- {machine['cpu']}, {machine['cpus']} CPUs, {machine['memory_gib']} GiB, Linux "
        f"{machine['kernel']}, Python {machine['python']}, nginx {machine['nginx']}, "
        f"{machine['wrk']}.",
        f"- Model: {results['model']['family']}, {results['model']['iterations']} boosting "
        "iterations, "
        f"{results['model']['features']} features, trained by `containers/bin/train` on the "
        "bundled data in the same run (with its compiled trees); every server loads that same "
        "model directory.",
        f"- Every server: {results['arguments']['workers']} workers, one predict thread per "
        "worker. Ours: `containers/bin/serve` (gunicorn asgi workers on uvloop, bare ASGI app), "
        "twice. "
        "Reference: "
        "`benchmarks/reference/` (nginx → unix socket → gunicorn gevent → flask → "
        "`pandas.read_csv` → predict → `DataFrame.to_csv`, model loaded lazily per worker).",
        "- Load: wrk, one thread, keep-alive, on loopback, on the same machine (it takes CPU "
        "from the servers, equally for all). wrk alone against nginx's static answer: "
        f"{results['wrk_against_static_nginx_rps']:,.0f} requests/s, far above any server, "
        "so the load generator is not the bottleneck.",
        "- Before timing, every server answered every payload with exactly the labels the "
        "model predicts in process.",
        f"- Load average at start {', '.join(f'{v:.1f}' for v in results['load_average_start'])}"
        f", at the end {', '.join(f'{v:.1f}' for v in results['load_average_end'])}. Busiest "
        "processes at the start (`ps -eo pcpu,etimes,args`, those at 1% CPU or more; "
        "%CPU is a lifetime average):",
        "",
        "```",
        *results["busy_processes_start"],
        "```",
        "",
        "and at the end:",
        "",
        "```",
        *results["busy_processes_end"],
        "```",
        "",
        "## Throughput and latency",
        "",
        *_pair_table(results, REFERENCE, "reference", "ours"),
        "",
        "\\* ours / reference, the median of the per-round ratios; the other columns are "
        "medians over rounds, so a ratio need not equal the quotient of two medians.",
        "",
        "### Compiled trees vs LightGBM: the same server, the same rounds",
        "",
        *_pair_table(results, OURS_LIBRARY, "LightGBM", "compiled"),
        "",
        "\\* ours / ours (LightGBM), the median of the per-round ratios.",
        "",
        "How wrk's keep-alive connections were shared among our workers, per round (`ss`, "
        "1 s into each run; the reference's nginx spreads every request over its workers "
        "instead):",
        "",
        *(
            f"- {scenario['name']}, {server}: "
            + ", ".join(
                "+".join(map(str, run.get("connections_per_worker", [])))
                for run in results["runs"][scenario["name"]][server]
            )
            for scenario in compared(results)
            for server in (OURS, OURS_LIBRARY)
        ),
        "",
        "### Answers with probabilities: JSON and JSON Lines (ours)",
        "",
        "The same requests asking for `application/json` or `application/jsonlines` (labels and "
        "every class's probability) instead of CSV labels; the reference has no such answer. "
        "These ran in the same rounds as the CSV scenarios above.",
        "",
        *_answers_table(results),
        "",
        "\\* records/s over ours with CSV answers in the same round, the median of the "
        "per-round ratios.",
        "",
        "Payloads: "
        + ", ".join(
            f"{name} = {p['records']:,} records, {p['bytes']:,} bytes"
            for name, p in results["payloads"].items()
        )
        + " (the inference split repeated; the 5 MB body stays under the classic nginx's 5 MiB "
        "`client_max_body_size`).",
        "",
        "## Ceilings: in-process predict on the same batches, LightGBM and compiled trees",
        "",
        *_ceiling_table(results),
        "",
        "## Cold start and memory",
        "",
        *_footprint_lines(results),
        "",
        "## Client Lambda on a 100 MB file",
        "",
        *_lambda_lines(results),
        "",
        "## How big a file the client streams",
        "",
        *_streaming_lines(results),
        "",
        "## Batch transform on a 1 GB file",
        "",
        *_batch_lines(results),
        "",
        "## Where the 5 MB request's time goes",
        "",
        *_profile_lines(results),
        "",
    ]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    """Throughput (records/s) and latency percentiles per scenario, the three servers side by
    side, with both ceilings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = compared(results)
    names = [scenario["name"] for scenario in shown]
    positions = range(len(names))
    colours = {REFERENCE: "#9e9e9e", OURS_LIBRARY: "#ff7f0e", OURS: "#1f77b4"}
    figure, (left, right) = plt.subplots(1, 2, figsize=(15, 5.5))
    for offset, server in zip((-0.27, 0.0, 0.27), SERVERS, strict=True):
        left.bar(
            [p + offset for p in positions],
            [median(per_round(results, name, "records_per_s")[server]) for name in names],
            width=0.27,
            color=colours[server],
            label=LABELS[server],
        )
    styles = {OURS_LIBRARY: "dashed", OURS: "dotted"}
    for position, scenario in zip(positions, shown, strict=True):
        for server, style in styles.items():
            value = median_ceiling(results, scenario["payload"], server)
            left.hlines(value, position - 0.4, position + 0.4, colors="black", linestyles=style)
    left.plot([], [], "k--", label="LightGBM ceiling: in-process, 1 thread x workers")
    left.plot([], [], "k:", label="compiled trees' ceiling")
    left.set_yscale("log")
    left.set_ylabel("records/s (log)")
    left.set_title("Throughput")
    left.legend()
    width = 0.13
    pairs = [(server, key) for server in SERVERS for key in ("p50_ms", "p99_ms")]
    for index, (server, key) in enumerate(pairs):
        right.bar(
            [p + (index - 2.5) * width for p in positions],
            [median(per_round(results, name, key)[server]) for name in names],
            width=width,
            color=colours[server],
            hatch="//" if key == "p99_ms" else None,
            edgecolor="white",
            label=f"{LABELS[server]} {key.split('_')[0]}",
        )
    right.set_yscale("log")
    right.set_ylabel("latency, ms (log)")
    right.set_title("Latency percentiles")
    right.legend()
    for axis in (left, right):
        axis.set_xticks(list(positions))
        axis.set_xticklabels([name.replace(", ", ",\n") for name in names], fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(
        f"Our server (compiled trees; LightGBM) vs the classic nginx + gunicorn gevent + flask "
        f"+ pandas container "
        f"({results['machine']['cpus']} CPUs, {results['arguments']['workers']} workers each)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: dict[str, Any], out: Path) -> None:
    commentary_file = Path(__file__).resolve().parent / "commentary.md"
    commentary = commentary_file.read_text() if commentary_file.is_file() else ""
    (out / "RESULTS.md").write_text(markdown(results, commentary))
    chart(results, out / "results.png")


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results.json"
    write(json.loads(source.read_text()), source.parent)
