"""The pull-request comment from `cdk diff`, on the real CLI's recorded output.

`diffs/*.txt` come from `python -m tests.tools.record_diffs` (see there how each was made).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tools import diff_comment
from tools.diff_comment import COMMENT_LIMIT, MARKER, fork_notice, main, parse, post, render

DIFFS = Path(__file__).resolve().parent / "diffs"
STACKS = [
    f"custom-sm-{name}" for name in ("storage", "registry", "iam", "training", "serving", "client")
]
ENDPOINT_RENAMED = [
    "custom-sm-iam: IAM widened: `ClientRole` may now `sagemaker:DescribeEndpoint`, "
    "`sagemaker:InvokeEndpoint` on `arn:…:sagemaker:…:…:endpoint/other-endpoint`",
    "custom-sm-iam: IAM widened: `SageMakerExecutionRole` may now `logs:CreateLogGroup`, "
    "`logs:CreateLogStream`, `logs:DescribeLogStreams`, `logs:PutLogEvents` on "
    "`arn:…:logs:…:…:log-group:/aws/sagemaker/Endpoints/other-endpoint`, "
    "`arn:…:logs:…:…:log-group:/aws/sagemaker/Endpoints/other-endpoint:*`",
    "custom-sm-iam: IAM widened: `TransformRole` may now `sagemaker:DescribeEndpoint` on "
    "`arn:…:sagemaker:…:…:endpoint/other-endpoint`",
    "custom-sm-serving: the log group `EndpointLogs` (AWS::Logs::LogGroup) will be REPLACED "
    "(LogGroupName changes)",
    "custom-sm-serving: the endpoint `Endpoint` (AWS::SageMaker::Endpoint) will be REPLACED "
    "(EndpointName changes)",
]


def recording(name: str) -> str:
    return (DIFFS / f"{name}.txt").read_text()


def flagged(comment: str) -> list[str]:
    return [line.removeprefix("- ⚠️ ") for line in comment.splitlines() if line.startswith("- ⚠️ ")]


def stack_rows(comment: str) -> dict[str, str]:
    return dict(re.findall(r"^\| `([\w-]+)` \| (.*) \|$", comment, flags=re.MULTILINE))


def sections(comment: str) -> dict[str, str]:
    """Each collapsible section's body, by the first word of its summary."""
    found = re.findall(
        r"<details><summary>(?:<b>)?([\w -]+?)(?:</b>)?[:(].*?</summary>\n(.*?)</details>",
        comment,
        flags=re.DOTALL,
    )
    return {name.strip(): body for name, body in found}


def test_no_changes_says_so_per_stack_and_overall() -> None:
    comment = render(recording("no-changes"))
    assert comment.startswith(MARKER)
    assert "✅ **No changes** in any stack." in comment
    assert stack_rows(comment) == dict.fromkeys(STACKS, "No changes")
    assert flagged(comment) == []
    assert "⚠️" not in comment
    assert set(sections(comment)) == {"CLI messages"}


def test_endpoint_replacement_is_flagged_with_the_iam_grants_it_brings() -> None:
    comment = render(recording("endpoint-renamed"))
    assert flagged(comment) == ENDPOINT_RENAMED
    assert "⚠️ **5 risky changes** (3 of 6 stacks change)" in comment
    # CDK says "may be replaced" for the scaling policy: not stateful, not renamed.
    serving = next(
        stack for stack in parse(recording("endpoint-renamed")).stacks if "serv" in stack.name
    )
    impacts = {resource.path: resource.impact for resource in serving.resources()}
    assert impacts["VariantScaling/InvocationsPerInstance"] == "may be replaced"
    assert impacts["Endpoint"] == "replace"


def test_colours_are_stripped_and_change_nothing() -> None:
    coloured = recording("endpoint-renamed")
    assert "\x1b[" in coloured
    comment = render(coloured)
    assert "\x1b" not in comment
    # The same change diffed on templates alone, without colours, flags the same.
    assert flagged(render(recording("template-only"))) == ENDPOINT_RENAMED


def test_bucket_deletion_and_replacement_are_flagged() -> None:
    comment = render(recording("bucket-removed"))
    assert flagged(comment) == [
        "custom-sm-storage: the bucket `Archive` (AWS::S3::Bucket) will be DELETED",
        "custom-sm-storage: the bucket `InferenceOutput` (AWS::S3::Bucket) will be REPLACED "
        "(BucketName changes)",
    ]
    # The bucket policy "may be replaced" too, but holds nothing.
    assert "InferenceOutput/Policy" in sections(comment)["custom-sm-storage"]


def test_iam_widening_lists_only_what_is_new() -> None:
    items = flagged(render(recording("iam-widened")))
    assert len(items) == 9
    assert all(
        item.startswith(("custom-sm-iam: IAM widened", "custom-sm-client: IAM")) for item in items
    )
    client = next(
        item for item in items if item.startswith("custom-sm-iam: IAM widened: `ClientRole`")
    )
    assert (
        "`sagemaker:CreateTransformJob` on `arn:…:sagemaker:…:…:transform-job/custom-sm-batch-*`"
        in client
    )
    # ClientRole could already invoke the endpoint: only DescribeEndpoint is new on it.
    assert (
        "`sagemaker:DescribeEndpoint` on `arn:…:sagemaker:…:…:endpoint/custom-sm-model-endpoint`"
        in client
    )
    assert "InvokeEndpoint" not in client
    assert (
        "custom-sm-iam: IAM widened: `Service:lambda.amazonaws.com` may now `sts:AssumeRole` "
        "on `${TransformRole.Arn}`"
    ) in items


def test_wildcards_managed_policies_trust_and_lifted_denials_are_flagged() -> None:
    assert flagged(render(recording("iam-opened"))) == [
        "custom-sm-storage: IAM widened: anyone (`*`) is no longer denied `s3:*` on "
        '`${Data.Arn}`, `${Data.Arn}/*` when `"Bool": { "aws:SecureTransport": "false" }`',
        "custom-sm-iam: IAM widened: `ClientRole` may now `s3:GetObject` on every resource (`*`)",
        "custom-sm-iam: IAM widened: `AWS:arn:aws:iam::111122223333:root` may now "
        "`sts:AssumeRole` on `${ClientRole.Arn}`",
        "custom-sm-iam: IAM widened: `ClientRole` gets the managed policy "
        "`arn:…:iam::aws:policy/AmazonSageMakerFullAccess`",
    ]


def test_deleted_topics_key_and_log_group_are_flagged_but_not_their_policies() -> None:
    comment = render(recording("async-to-realtime"))
    assert flagged(comment) == [
        "custom-sm-iam: IAM widened: `ClientRole` may now `sagemaker:InvokeEndpoint` on "
        "`arn:…:sagemaker:…:…:endpoint/custom-sm-model-endpoint`",
        "custom-sm-serving: the key `AsyncTopics/Key` (AWS::KMS::Key) will be DELETED",
        "custom-sm-serving: the topic `AsyncTopics/Success` (AWS::SNS::Topic) will be DELETED",
        "custom-sm-serving: the topic `AsyncTopics/Error` (AWS::SNS::Topic) will be DELETED",
        "custom-sm-client: the log group `CompletionsLogs` (AWS::Logs::LogGroup) will be DELETED",
    ]
    # The topics' SSL-only Deny statements go with the topics: no denial is lifted.
    assert "│ - │ ${AsyncTopics/Error}   │ Deny" in sections(comment)["custom-sm-serving"]


def test_a_retrain_changes_stacks_but_nothing_risky() -> None:
    comment = render(recording("retrain"))
    assert flagged(comment) == []
    assert "✅ **No risky changes** in the 2 of 6 stacks that change" in comment
    rows = stack_rows(comment)
    assert rows["custom-sm-training"] == "resources: 2 added, 3 changed, 2 removed"
    assert rows["custom-sm-serving"] == "resources: 2 changed"
    assert rows["custom-sm-storage"] == "No changes"


def test_orphaned_and_possibly_replaced_named_resources() -> None:
    """The CLI's line formats for impacts the recordings lack (its formatter's wording)."""
    text = "\n".join(
        [
            "Stack custom-sm-client",
            "Resources",
            "[-] AWS::S3::Bucket Old Old1234ABCD orphan",
            "[~] AWS::IAM::Role Worker Worker1234ABCD may be replaced",
            " └─ [~] RoleName (may cause replacement)",
            "     ├─ [-] a",
            "     └─ [+] b",
            "[~] AWS::Lambda::Function Fn Fn1234ABCD replace",
            " └─ [~] Code (requires replacement)",
            "",
            "✨  Number of stacks with differences: 1",
        ]
    )
    assert flagged(render(text)) == [
        "custom-sm-client: the bucket `Old` (AWS::S3::Bucket) will be removed from the stack "
        "but kept in the account (orphaned)",
        "custom-sm-client: the named resource `Worker` (AWS::IAM::Role) may be REPLACED "
        "(RoleName changes)",
    ]


def test_one_section_per_changed_stack_holding_only_its_diff() -> None:
    comment = render(recording("endpoint-renamed"))
    found = sections(comment)
    assert list(found) == ["custom-sm-iam", "custom-sm-serving", "custom-sm-client", "CLI messages"]
    serving = found["custom-sm-serving"]
    assert serving.startswith("\n```diff\n")
    assert "! [~] AWS::SageMaker::Endpoint Endpoint Endpoint replace" in serving
    assert "+      └─ [+] other-endpoint" in serving
    assert "AWS::IAM::Policy" not in serving
    assert "AWS::IAM::Policy" in found["custom-sm-iam"]
    # The CLI's log lines between stacks are gathered apart, once each.
    assert all(
        "Hold on while" not in body for name, body in found.items() if name != "CLI messages"
    )
    assert found["CLI messages"].count("Hold on while") == 1
    assert "<b>custom-sm-serving</b>: ⚠️ 2 risky; resources: 6 changed</summary>" in comment


def test_a_huge_diff_is_cut_to_fit_one_comment() -> None:
    text = recording("iam-widened")
    iam = text.index("Stack custom-sm-iam")
    resources = text.index("\nResources\n", iam) + len("\nResources\n")
    outputs = text.index("\nOutputs\n", iam)
    # The iam stack's resource diff repeated until the output is five times the limit.
    huge = text[:outputs] + ("\n" + text[resources:outputs]) * 40 + text[outputs:]
    assert len(huge) > 5 * COMMENT_LIMIT
    comment = render(huge)
    assert len(comment) <= COMMENT_LIMIT
    found = sections(comment)
    assert "✂️ *Cut " in found["custom-sm-iam"]
    assert "run `npx cdk diff custom-sm-iam` for all of it" in found["custom-sm-iam"]
    assert "✂️" not in found["custom-sm-client"]  # small sections stay whole
    assert found["custom-sm-client"] == sections(render(text))["custom-sm-client"]
    assert flagged(comment) == flagged(render(text))  # the summary is never cut
    assert all(body.count("```") == 2 for body in found.values())


def test_output_without_stacks_or_cut_short_is_reported() -> None:
    comment = render("Unknown option(s): --all.\nUnable to resolve AWS account to use.\n")
    assert comment.startswith(MARKER)
    assert "**No stack found**" in comment
    assert "Unable to resolve AWS account to use." in comment
    assert "No changes" not in comment
    text = recording("bucket-removed")
    cut_short = text[: text.index("Stack custom-sm-iam")]
    assert "may have stopped early" in render(cut_short)
    assert "may have stopped early" not in render(text)


def test_fork_notice_explains_and_carries_the_marker() -> None:
    notice = fork_notice("cdk diff for abc123")
    assert notice.startswith(MARKER)
    assert "### cdk diff for abc123" in notice
    assert "fork" in notice and "No diff was run" in notice


def test_render_and_fork_notice_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(DIFFS / "bucket-removed.txt"), "--title", "Diff <main>"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(MARKER) and "### Diff &lt;main&gt;" in out
    assert main(["fork-notice"]) == 0
    assert "No diff was run" in capsys.readouterr().out


@dataclass
class FakeGitHub:
    """Issue comments of one pull request, served two per page like GitHub's pagination."""

    comments: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_with: tuple[int, dict] | None = None
    next_id: int = 100
    page_size: int = 2


def _handler(github: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def _answer(self, status: int, payload: Any, link: str = "") -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if link:
                self.send_header("Link", link)
            self.end_headers()
            self.wfile.write(body)

        def _start(self) -> dict | None:
            github.requests.append((self.command, self.path))
            assert self.headers["Authorization"] == "Bearer test-token"
            if github.fail_with:
                self._answer(*github.fail_with)
                return None
            length = int(self.headers.get("Content-Length", 0))
            return json.loads(self.rfile.read(length)) if length else {}

        def do_GET(self) -> None:
            if self._start() is None:
                return
            url = urlsplit(self.path)
            assert url.path == "/repos/octo/app/issues/7/comments"
            page = int(parse_qs(url.query).get("page", ["1"])[0])
            start = (page - 1) * github.page_size
            link = ""
            if start + github.page_size < len(github.comments):
                host = f"http://{self.headers['Host']}"
                link = f'<{host}{url.path}?per_page=100&page={page + 1}>; rel="next"'
            self._answer(200, github.comments[start : start + github.page_size], link)

        def do_POST(self) -> None:
            body = self._start()
            if body is None:
                return
            comment = {
                "id": github.next_id,
                "body": body["body"],
                "html_url": f"c/{github.next_id}",
            }
            github.next_id += 1
            github.comments.append(comment)
            self._answer(201, comment)

        def do_PATCH(self) -> None:
            body = self._start()
            if body is None:
                return
            comment_id = int(self.path.rsplit("/", 1)[1])
            comment = next(c for c in github.comments if c["id"] == comment_id)
            comment["body"] = body["body"]
            self._answer(200, comment)

    return Handler


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv("GITHUB_API_URL", f"http://127.0.0.1:{server.server_address[1]}/")
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")
    yield fake
    server.shutdown()
    server.server_close()


def _post(tmp_path: Path, body: str) -> int:
    body_file = tmp_path / "comment.md"
    body_file.write_text(body)
    return main(["post", "--repo", "octo/app", "--pr", "7", "--body-file", str(body_file)])


def test_post_creates_the_comment_then_updates_it_in_place(
    github: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    github.comments = [{"id": n, "body": f"human comment {n}"} for n in range(1, 6)]
    assert _post(tmp_path, render(recording("no-changes"))) == 0
    assert capsys.readouterr().out == "created c/100\n"
    # Every page was read before creating: 5 comments, 2 per page.
    gets = [path for method, path in github.requests if method == "GET"]
    assert len(gets) == 3 and gets[-1].endswith("page=3")
    github.requests.clear()

    assert _post(tmp_path, render(recording("bucket-removed"))) == 0
    assert capsys.readouterr().out == "updated c/100\n"
    assert [method for method, _ in github.requests] == ["GET", "GET", "GET", "PATCH"]
    assert github.requests[-1][1] == "/repos/octo/app/issues/comments/100"
    marked = [c for c in github.comments if MARKER in c["body"]]
    assert len(marked) == 1 and "bucket `Archive`" in marked[0]["body"]
    assert len(github.comments) == 6


def test_post_adds_the_marker_to_a_body_without_it(github: FakeGitHub) -> None:
    api = diff_comment.os.environ["GITHUB_API_URL"].rstrip("/")
    assert post(api, "octo/app", 7, "hello", "test-token")[0] == "created"
    assert post(api, "octo/app", 7, "hello again", "test-token")[0] == "updated"
    assert [c["body"] for c in github.comments] == [f"{MARKER}\nhello again"]


def test_post_reports_github_errors_clearly(
    github: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    github.fail_with = (
        403,
        {
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest",
        },
    )
    assert _post(tmp_path, "body") == 1
    error = capsys.readouterr().err
    assert "HTTP 403: Resource not accessible by integration" in error
    assert "GET http://127.0.0.1:" in error and "/repos/octo/app/issues/7/comments" in error

    github.fail_with = (
        422,
        {
            "message": "Validation Failed",
            "errors": [{"code": "custom", "message": "Body is too long"}],
        },
    )
    assert _post(tmp_path, "body") == 1
    assert "HTTP 422: Validation Failed; Body is too long" in capsys.readouterr().err


def test_post_needs_a_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    assert _post(tmp_path, "body") == 2
    assert "GITHUB_TOKEN" in capsys.readouterr().err
