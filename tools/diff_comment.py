"""One pull-request comment from `npx cdk diff` of every stack: risky changes first, then each.

    python -m tools.diff_comment render DIFF_OUTPUT_FILE [--title TITLE] > comment.md
    python -m tools.diff_comment fork-notice [--title TITLE] > comment.md
    python -m tools.diff_comment post --repo OWNER/NAME --pr N --body-file comment.md

`render` reads what the CLI printed (stdout and stderr together, with colours or without) and
writes markdown: a summary naming every risky change in plain words, a table of the stacks,
one collapsible section per changed stack with its diff (cut to stay under GitHub's limit on a
comment), and one with the CLI's other messages. A change is risky when:

* a stateful resource (a type in `STATEFUL`: it holds data, or others hold its name or ARN)
  will be or may be replaced, or will be deleted or orphaned (removed but kept);
* any resource will be or may be replaced because a property whose name ends in `Name`
  changes: whatever uses the old name stops working;
* IAM grants more. In "IAM Statement Changes", a `+` Allow row grants an action on a resource
  that the same principal was not granted under the same condition (CDK shows a changed
  statement as a `-` row and a `+` row, so only the difference counts), or a `-` Deny row lifts
  a denial (unless the resource it protects is deleted in the same stack). In "IAM Policy
  Changes", a `+` row attaches a managed policy.

Not caught: security group changes, IAM Identity Center changes, policies that CDK does not put
in its tables (see its "(NOTE: ...)"), a deletion policy changed from Retain to Delete, and any
resource that CloudFormation replaces without CDK saying so.

The comment holds a hidden marker, by which `post` finds it again and updates it in place.
`post` reads the token from GITHUB_TOKEN (a workflow's token needs `pull-requests: write`) and
the API from GITHUB_API_URL (default https://api.github.com).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER = "<!-- cdk-diff-comment -->"
DEFAULT_TITLE = "cdk diff"
# GitHub refuses a longer comment body; the margin leaves room for the cut notes' numbers.
COMMENT_LIMIT = 65_536
MARGIN = 1_000
# Beyond this, a stack's findings are counted, not listed (a new stack grants everything).
MAX_FINDINGS_PER_STACK = 25
TAIL_LINES = 40

# Resources whose replacement or deletion loses data, or breaks what refers to them.
STATEFUL = {
    "AWS::S3::Bucket": "bucket",
    "AWS::SageMaker::Endpoint": "endpoint",
    "AWS::SQS::Queue": "queue",
    "AWS::KMS::Key": "key",
    "AWS::Logs::LogGroup": "log group",
    "AWS::SNS::Topic": "topic",
    "AWS::ECR::Repository": "image repository",
    "AWS::DynamoDB::Table": "table",
    "AWS::DynamoDB::GlobalTable": "table",
    "AWS::RDS::DBInstance": "database",
    "AWS::RDS::DBCluster": "database cluster",
    "AWS::EFS::FileSystem": "file system",
    "AWS::Kinesis::Stream": "stream",
    "AWS::SecretsManager::Secret": "secret",
    "AWS::Cognito::UserPool": "user pool",
}
VERDICTS = {
    "replace": "will be REPLACED",
    "may be replaced": "may be REPLACED",
    "destroy": "will be DELETED",
    "orphan": "will be removed from the stack but kept in the account (orphaned)",
}

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
STACK_HEADER = re.compile(r"^Stack (?P<name>\S+)(?: \([^()]*\))?$")
NO_DIFFERENCES = "There were no differences"
SECTIONS = frozenset(
    {
        "Template",
        "IAM Statement Changes",
        "IAM Policy Changes",
        "IAM Identity Center Changes",
        "Security Group Changes",
        "Parameters",
        "Metadata",
        "Mappings",
        "Conditions",
        "Resources",
        "Outputs",
        "Other Changes",
    }
)
RESOURCE_LINE = re.compile(
    r"^\[(?P<op>[-+~←])\] (?P<type>\S+::\S+) (?P<ids>.+?)"
    r"(?: (?P<impact>may be replaced|replace|destroy|orphan|import))?(?: \(OR move .*\))?$"
)
PROPERTY_LINE = re.compile(
    r"^ [├└]─ \[[-+~]\] (?P<name>\S+)"
    r"(?: \((?:requires replacement|may cause replacement)\))?$"
)
DIFF_TAG = re.compile(r"\[([-+~])\]")
STACK_OUTPUT = re.compile(r'\{"Fn::GetStackOutput":\{(?:[^{}]|\$\{[^}]*\})*\}\}')
REFERENCE = re.compile(r"\$\{([^}.]+)[^}]*\}")
NEXT_PAGE = re.compile(r'<([^>]+)>;\s*rel="next"')
STACK_COUNT = re.compile(r"Number of stacks with differences: (\d+)")


@dataclass
class Resource:
    """One line of a stack's "Resources" section, with the properties that replace it."""

    op: str
    type: str
    path: str
    impact: str | None
    replacing: list[str] = field(default_factory=list)


@dataclass
class Row:
    """One row of a CDK table: its `+`/`-` sign and each column's lines."""

    sign: str
    cells: list[list[str]]

    def column(self, index: int) -> list[str]:
        return self.cells[index] if index < len(self.cells) else []


@dataclass
class StackDiff:
    name: str
    lines: list[str]

    @property
    def changed(self) -> bool:
        return any(line.strip() and not line.startswith(NO_DIFFERENCES) for line in self.lines)

    def section(self, title: str) -> list[str]:
        """The lines under one section header, up to the next one."""
        out: list[str] = []
        current = None
        for line in self.lines:
            if line in SECTIONS:
                current = line
            elif current == title:
                out.append(line)
        return out

    def resources(self) -> list[Resource]:
        resources: list[Resource] = []
        for line in self.section("Resources"):
            if match := RESOURCE_LINE.match(line):
                ids = match["ids"].rsplit(" ", 1)
                resources.append(Resource(match["op"], match["type"], ids[0], match["impact"]))
            elif resources and (match := PROPERTY_LINE.match(line)) and "replace" in line:
                resources[-1].replacing.append(match["name"])
        return resources


@dataclass
class Report:
    """The stacks in the order the CLI printed them, its other lines, and its own count."""

    stacks: list[StackDiff]
    messages: list[str]
    tail: list[str]
    counted: int | None

    def notes(self) -> list[str]:
        """What makes the comment less trustworthy than it looks."""
        changed = sum(stack.changed for stack in self.stacks)
        notes = []
        if self.counted is None:
            notes.append(
                '❗ The output lacks CDK\'s closing "Number of stacks with differences": '
                "the diff may have stopped early, and stacks may be missing below."
            )
        elif self.counted != changed:
            notes.append(
                f"❗ CDK counts {self.counted} stacks with differences, this comment "
                f"{changed}: check the diffs below."
            )
        return notes


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def _is_diff_line(line: str) -> bool:
    """Whether a line belongs to a stack's diff (the CLI's log lines start at column 0)."""
    return (
        line[:1] in (" ", "[", "┌", "│", "├", "└")
        or line in SECTIONS
        or line.startswith((NO_DIFFERENCES, "(NOTE:", "Omitted "))
    )


def parse(text: str) -> Report:
    """Split the CLI's output into stacks; log lines between them become messages."""
    lines = [line.rstrip() for line in strip_ansi(text).replace("\r\n", "\n").split("\n")]
    stacks: list[StackDiff] = []
    outside: list[str] = []
    for line in lines:
        if match := STACK_HEADER.match(line):
            stacks.append(StackDiff(match["name"], []))
        elif stacks:
            stacks[-1].lines.append(line)
        else:
            outside.append(line)
    for stack in stacks:
        last = max((i for i, line in enumerate(stack.lines) if _is_diff_line(line)), default=-1)
        outside += stack.lines[last + 1 :]
        stack.lines = stack.lines[: last + 1]
    messages = list(dict.fromkeys(line for line in outside if line.strip()))
    tail = [line for line in lines if line.strip()][-TAIL_LINES:]
    counts = [int(match[1]) for line in messages if (match := STACK_COUNT.search(line))]
    return Report(stacks, messages, tail, counts[-1] if counts else None)


def _table_rows(lines: Iterable[str]) -> list[Row]:
    """The rows of a CDK box table; a row's lines continue while the sign column is blank."""
    rows: list[Row] = []
    for line in lines:
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if cells[0] in ("+", "-"):
            rows.append(Row(cells[0], [[cell] if cell else [] for cell in cells]))
        elif rows and not cells[0]:
            for column, cell in zip(rows[-1].cells, cells, strict=False):
                if cell:
                    column.append(cell)
    return rows


def _compact(value: str) -> str:
    """An ARN or principal made short: pseudo parameters elided, weak references named."""

    def stack_output(match: re.Match[str]) -> str:
        reference = json.loads(match[0].replace("${AWS::Region}", ""))["Fn::GetStackOutput"]
        return f"${{{reference['StackName']}.{reference['OutputName']}}}"

    value = STACK_OUTPUT.sub(stack_output, value)
    for pseudo in ("${AWS::Partition}", "${AWS::Region}", "${AWS::AccountId}"):
        value = value.replace(pseudo, "…")
    return value


def _principal(value: str) -> str:
    if value in ("*", "AWS:*"):
        return "anyone (`*`)"
    if match := re.fullmatch(r"AWS:\$\{([^}.]+)\}", value):
        return f"`{match[1]}`"
    return f"`{_compact(value)}`"


def _resource_text(value: str) -> str:
    return "every resource (`*`)" if value == "*" else f"`{_compact(value)}`"


def _grants(row: Row) -> set[tuple[str, str, str, str]]:
    """(principal, condition, action, resource) for every grant a statement row spells out."""
    condition = " ".join(row.column(5))
    return {
        (principal, condition, action, resource)
        for principal in row.column(4) or ["*"]
        for action in row.column(3)
        for resource in row.column(1)
    }


def _grant_phrases(grants: set[tuple[str, str, str, str]], verb: str) -> list[str]:
    """One phrase per principal and condition: which actions on which resources."""
    by_principal: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for principal, condition, action, resource in grants:
        by_principal[principal, condition][action].add(resource)
    phrases = []
    for (principal, condition), actions in sorted(by_principal.items()):
        by_resources: dict[frozenset[str], list[str]] = defaultdict(list)
        for action, resources in sorted(actions.items()):
            by_resources[frozenset(resources)].append(action)
        parts = [
            ", ".join(f"`{action}`" for action in acts)
            + " on "
            + ", ".join(_resource_text(resource) for resource in sorted(resources))
            for resources, acts in by_resources.items()
        ]
        when = f" when `{condition}`" if condition else ""
        phrases.append(f"IAM widened: {_principal(principal)} {verb} {'; '.join(parts)}{when}")
    return phrases


def iam_findings(stack: StackDiff, deleted_paths: set[str]) -> list[str]:
    """The IAM changes that grant more, in plain words."""
    rows = _table_rows(stack.section("IAM Statement Changes"))

    def grants(sign: str, effect: str) -> set[tuple[str, str, str, str]]:
        return {
            grant
            for row in rows
            if row.sign == sign and row.column(2) == [effect]
            for grant in _grants(row)
        }

    allowed = grants("+", "Allow") - grants("-", "Allow")
    lifted = {
        grant
        for grant in grants("-", "Deny") - grants("+", "Deny")
        if not set(REFERENCE.findall(grant[3])) & deleted_paths
    }
    findings = _grant_phrases(allowed, "may now") + _grant_phrases(lifted, "is no longer denied")
    policies = _table_rows(stack.section("IAM Policy Changes"))
    removed = {(tuple(row.column(1)), tuple(row.column(2))) for row in policies if row.sign == "-"}
    for row in policies:
        if row.sign == "+" and (tuple(row.column(1)), tuple(row.column(2))) not in removed:
            for identity in row.column(1):
                for policy in row.column(2):
                    findings.append(
                        f"IAM widened: {_principal('AWS:' + identity)} gets the managed "
                        f"policy `{_compact(policy)}`"
                    )
    return findings


def resource_findings(resources: list[Resource]) -> list[str]:
    """Replacements and deletions of stateful or named resources, in plain words."""
    findings = []
    for resource in resources:
        verdict = VERDICTS.get(resource.impact or "")
        noun = STATEFUL.get(resource.type)
        names = [name for name in resource.replacing if name.endswith("Name")]
        named = bool(names) and resource.impact in ("replace", "may be replaced")
        if verdict and (noun or named):
            because = f" ({', '.join(names)} changes)" if named else ""
            findings.append(
                f"the {noun or 'named resource'} `{resource.path}` ({resource.type}) "
                f"{verdict}{because}"
            )
    return findings


def findings(stack: StackDiff) -> list[str]:
    resources = stack.resources()
    deleted = {resource.path for resource in resources if resource.op == "-"}
    return resource_findings(resources) + iam_findings(stack, deleted)


def _status(stack: StackDiff, risky: int) -> str:
    if not stack.changed:
        return "No changes"
    counts = defaultdict(int)
    for resource in stack.resources():
        counts[resource.op] += 1
    words = [
        f"{counts[op]} {word}"
        for op, word in (("+", "added"), ("~", "changed"), ("-", "removed"), ("←", "imported"))
        if counts[op]
    ]
    status = f"resources: {', '.join(words)}" if words else "changed (no resources)"
    return f"⚠️ {risky} risky; {status}" if risky else status


def _marked(lines: list[str]) -> list[str]:
    """Each line prefixed for GitHub's diff colours: `+` added, `-` removed, `!` changed."""
    out = []
    sign = " "
    for line in lines:
        if line.startswith("│"):
            cell = line[1:].split("│", 1)[0].strip()
            sign = cell or sign
        elif match := DIFF_TAG.search(line):
            sign = {"+": "+", "-": "-", "~": "!"}[match[1]]
        else:
            sign = " "
        out.append(f"{sign} {line}")
    return out


def _fence(lines: list[str]) -> str:
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


@dataclass
class Section:
    """A collapsible block whose lines may be cut to fit the comment."""

    summary: str
    lines: list[str]
    hint: str
    language: str = "diff"

    def render(self, keep: int | None = None) -> str:
        kept = self.lines if keep is None else self.lines[:keep]
        fence = _fence(self.lines)
        body = "\n".join(kept)
        cut = ""
        if len(kept) < len(self.lines):
            cut = (
                f"\n✂️ *Cut {len(self.lines) - len(kept):,} of {len(self.lines):,} lines to stay "
                f"under GitHub's limit of {COMMENT_LIMIT:,} characters per comment; "
                f"{self.hint}.*\n"
            )
        return (
            f"<details><summary>{self.summary}</summary>\n\n"
            f"{fence}{self.language}\n{body}\n{fence}\n{cut}\n</details>\n"
        )

    def fit(self, budget: int) -> str:
        """The section in at most `budget` characters, keeping as many whole lines as fit."""
        whole = self.render()
        if len(whole) <= budget:
            return whole
        keep = 0
        size = len(self.render(0))
        for line in self.lines:
            size += len(line) + 1
            if size > budget:
                break
            keep += 1
        return self.render(keep)


def _fit(head: str, sections: list[Section]) -> str:
    """Share what the head leaves of the limit: small sections whole, big ones cut evenly."""
    available = COMMENT_LIMIT - MARGIN - len(head)
    budgets: dict[int, int] = {}
    order = sorted(range(len(sections)), key=lambda i: len(sections[i].render()))
    for position, index in enumerate(order):
        share = available // (len(sections) - position)
        budgets[index] = min(len(sections[index].render()), share)
        available -= budgets[index]
    return head + "\n".join(section.fit(budgets[index]) for index, section in enumerate(sections))


def render(text: str, title: str = DEFAULT_TITLE) -> str:
    """The comment for the CLI's output `text`."""
    report = parse(text)
    head = [MARKER, f"### {html.escape(title)}", ""]
    if not report.stacks:
        tail = "\n".join(report.tail) or "(no output)"
        fence = _fence(report.tail)
        head += [
            "❓ **No stack found** in the output of `cdk diff`: it probably failed. "
            "Its last lines:",
            "",
            f"{fence}\n{tail}\n{fence}",
            "",
        ]
        return "\n".join(head)
    risky = {stack.name: findings(stack) for stack in report.stacks}
    changed = [stack for stack in report.stacks if stack.changed]
    total = sum(len(items) for items in risky.values())
    if not changed:
        head.append("✅ **No changes** in any stack.")
    elif not total:
        head.append(
            f"✅ **No risky changes** in the {len(changed)} of {len(report.stacks)} stacks "
            "that change: nothing stateful or named is replaced or deleted, and no IAM "
            "permission is widened."
        )
    else:
        head += [
            f"⚠️ **{total} risky change{'s' if total > 1 else ''}** "
            f"({len(changed)} of {len(report.stacks)} stacks change):",
            "",
        ]
        for stack in report.stacks:
            items = risky[stack.name]
            head += [f"- ⚠️ {stack.name}: {item}" for item in items[:MAX_FINDINGS_PER_STACK]]
            if len(items) > MAX_FINDINGS_PER_STACK:
                head.append(
                    f"- ⚠️ {stack.name}: and {len(items) - MAX_FINDINGS_PER_STACK} more "
                    "(see its diff below)"
                )
    head += ["", *(f"{note}\n" for note in report.notes())]
    head += ["| stack | changes |", "| --- | --- |"]
    head += [
        f"| `{stack.name}` | {_status(stack, len(risky[stack.name]))} |" for stack in report.stacks
    ]
    sections = [
        Section(
            f"<b>{html.escape(stack.name)}</b>: {_status(stack, len(risky[stack.name]))}",
            _marked(stack.lines),
            f"run `npx cdk diff {stack.name}` for all of it",
        )
        for stack in changed
    ]
    if report.messages:
        sections.append(
            Section(
                f"CLI messages ({len(report.messages)} lines)",
                report.messages,
                "the workflow's log has all of them",
                language="text",
            )
        )
    return _fit("\n".join([*head, "", ""]), sections)


def fork_notice(title: str = DEFAULT_TITLE) -> str:
    """The comment for a pull request from a fork, whose workflow gets no AWS credentials."""
    return "\n".join(
        [
            MARKER,
            f"### {html.escape(title)}",
            "",
            "⏭️ **No diff was run**: this pull request comes from a fork, and GitHub gives "
            "workflows of forks no secrets, so there are no AWS credentials to read the "
            "deployed stacks with. A maintainer can run `npx cdk diff` on this branch "
            "with their own credentials, or push the branch to this repository to get the diff "
            "here.",
            "",
        ]
    )


class GitHubError(Exception):
    """A GitHub API call failed; the message says which call, the HTTP status and why."""


def _call(method: str, url: str, token: str, body: dict | None = None) -> tuple[Any, str]:
    """One API call: its JSON answer and its Link header."""
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "User-Agent": "cdk-diff-comment",
            "X-GitHub-Api-Version": "2022-11-28",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response), response.headers.get("Link", "")
    except urllib.error.HTTPError as error:
        raise GitHubError(f"{method} {url}: HTTP {error.code}: {_github_message(error)}") from None
    except urllib.error.URLError as error:
        raise GitHubError(f"{method} {url}: {error.reason}") from None


def _github_message(error: urllib.error.HTTPError) -> str:
    """GitHub's own explanation: `message`, and the `errors` details of a 422."""
    text = error.read().decode("utf-8", "replace")
    try:
        payload = json.loads(text)
    except ValueError:
        return text.strip()[:500] or str(error.reason)
    if not isinstance(payload, dict):
        return text.strip()[:500]
    details = [
        str(item.get("message") or item.get("code"))
        for item in payload.get("errors", [])
        if isinstance(item, dict)
    ]
    return "; ".join([str(payload.get("message", error.reason)), *details])


def find_comment(api: str, repo: str, pr: int, token: str) -> dict | None:
    """The pull request's first comment that holds the marker, through every page."""
    url: str | None = f"{api}/repos/{repo}/issues/{pr}/comments?per_page=100"
    while url:
        comments, link = _call("GET", url, token)
        for comment in comments:
            if MARKER in (comment.get("body") or ""):
                return comment
        next_page = NEXT_PAGE.search(link)
        url = next_page[1] if next_page else None
    return None


def post(api: str, repo: str, pr: int, body: str, token: str) -> tuple[str, str]:
    """Update the marked comment in place, or create it: ("updated"|"created", its URL)."""
    if MARKER not in body:
        body = f"{MARKER}\n{body}"
    existing = find_comment(api, repo, pr, token)
    if existing:
        comment, _ = _call(
            "PATCH", f"{api}/repos/{repo}/issues/comments/{existing['id']}", token, {"body": body}
        )
        return "updated", comment.get("html_url", "")
    comment, _ = _call("POST", f"{api}/repos/{repo}/issues/{pr}/comments", token, {"body": body})
    return "created", comment.get("html_url", "")


def _repository(value: str) -> str:
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", value):
        raise argparse.ArgumentTypeError(f"not OWNER/NAME: {value!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    render_command = commands.add_parser("render", help="print the comment for a diff's output")
    render_command.add_argument("diff_output", type=Path, help="what `cdk diff` printed")
    fork_command = commands.add_parser("fork-notice", help="print the comment for a fork")
    for command in (render_command, fork_command):
        command.add_argument("--title", default=DEFAULT_TITLE)
    post_command = commands.add_parser("post", help="create or update the pull request comment")
    post_command.add_argument("--repo", required=True, type=_repository, help="OWNER/NAME")
    post_command.add_argument("--pr", required=True, type=int, help="pull request number")
    post_command.add_argument("--body-file", required=True, type=Path)
    args = parser.parse_args(argv)

    if args.command == "render":
        print(render(args.diff_output.read_text(encoding="utf-8", errors="replace"), args.title))
    elif args.command == "fork-notice":
        print(fork_notice(args.title))
    else:
        token = os.environ.get("GITHUB_TOKEN")
        if not token:
            print("error: set GITHUB_TOKEN to a token that may comment", file=sys.stderr)
            return 2
        api = (os.environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
        try:
            action, url = post(
                api, args.repo, args.pr, args.body_file.read_text(encoding="utf-8"), token
            )
        except GitHubError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"{action} {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
