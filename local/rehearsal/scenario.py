"""The rehearsal: what a user's deploys and teardowns do, on moto, checked as a user would.

Deploys (`rehearsed`):
1. `npx cdk synth` of the tree, then `cdk deploy --all` into an empty account and region;
2. the same again (a second synth of the unchanged tree): every stack must be skipped;
3. a retrain (`-c config.training.hyperparameters.num_leaves=63`): a new training job must
   start, and the endpoint must get a new model and endpoint config that serve the new model;
4. the same model with a longer run time: a new wait condition, which the custom resource
   releases at once for the completed job it keeps (its state-change event is long gone).

Teardowns (`rehearsed_teardown`, in an account of its own):
4. `cdk destroy --all` with the default `storage.removal_policy` (retain): exactly the five
   buckets stay, with their objects;
5. a new `cdk deploy --all`, switched to `destroy` as the README says (only the storage stack
   changes), objects written, then `cdk destroy --all`: nothing of it stays.

The region is eu-west-1 on purpose: an assembly that names another region fails to deploy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.checks import Checklist
from local.moto_server import start_moto_server
from local.rehearsal.assembly import read_assembly
from local.rehearsal.deployer import Rehearsal, StackResult
from local.rehearsal.gaps import Gaps

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
RETRAIN = ("config.training.hyperparameters.num_leaves=63",)
LONGER_RUN = (*RETRAIN, "config.training.max_run_seconds=1800")
RELEASED_BY_EVENT = "released by the job's state-change event"
RELEASED_BY_CUSTOM_RESOURCE = "released by a signal sent when the custom resource found the job"
DESTROY = ("config.storage.removal_policy=destroy",)
# What teardown leaves by design of the services (the README says so): job records.
KEPT_BY_DESIGN = ("training jobs",)
SYNTH_TIMEOUT_SECONDS = 300


@dataclass
class Deploy:
    """One `cdk deploy --all`: what it was, and what each stack did."""

    label: str
    assembly: Path
    results: list[StackResult]
    # The endpoint, its config and model right after this deploy.
    endpoint: dict[str, str]

    def result(self, suffix: str) -> StackResult:
        return next(r for r in self.results if r.name.endswith(f"-{suffix}"))


@dataclass(kw_only=True)
class RehearsalRun(Checklist):
    rehearsal: Rehearsal
    deploys: list[Deploy] = field(default_factory=list)
    gaps: Gaps = field(default_factory=Gaps)

    def report(self, *, gaps: bool = True) -> str:
        lines: list[str] = []
        for deploy in self.deploys:
            lines.append(f"== {deploy.label}")
            lines.extend(f"  {describe(result)}" for result in deploy.results)
        lines.append("== checks")
        lines.extend(check.line() for check in self.checks)
        if gaps:
            lines.extend(self.gaps.lines())
        return "\n".join(lines)


def describe(result: StackResult) -> str:
    if result.skipped:
        return f"{result.name}: skipped (template unchanged)"
    if not (result.added or result.modified) and result.removed:
        calls = (
            f"; custom resources: {', '.join(result.custom_calls)}" if result.custom_calls else ""
        )
        return f"{result.name}: deleted ({len(result.removed)} resources){calls}"
    parts = [
        f"{len(items)} {what}"
        for what, items in (
            ("added", result.added),
            ("modified", result.modified),
            ("replaced", result.replaced),
            ("removed", result.removed),
        )
        if items
    ]
    text = f"{result.name}: {', '.join(parts) or 'no resource changed'}"
    if result.replaced:
        text += f" (replaced: {', '.join(result.replaced)})"
    if result.custom_calls:
        text += f"; custom resources: {', '.join(result.custom_calls)}"
    return text


def synth(outdir: Path, overrides: tuple[str, ...] = ()) -> Path:
    """`npx cdk synth` as a user runs it, with no AWS settings (the CLI then assumes
    us-east-1, which the assembly must not keep)."""
    shutil.rmtree(outdir, ignore_errors=True)
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CDK_"))
    }
    environment["AWS_EC2_METADATA_DISABLED"] = "true"
    context = [argument for override in overrides for argument in ("-c", override)]
    process = subprocess.run(
        ["npx", "cdk", "synth", "--quiet", "--no-notices", "--output", str(outdir), *context],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=SYNTH_TIMEOUT_SECONDS,
        check=False,
    )
    if process.returncode != 0:
        raise RuntimeError(f"cdk synth failed:\n{process.stdout}{process.stderr}")
    return outdir


def deploy_all(run: RehearsalRun, label: str, assembly: Path) -> Deploy:
    stacks = read_assembly(assembly)
    results = [run.rehearsal.deploy(stack) for stack in stacks]
    for stack, result in zip(stacks, results, strict=True):
        if not result.skipped:
            handled = {key: "not run: " + why for key, why in result.custom_skipped.items()}
            run.gaps.add_template(stack.name, stack.template, handled)
    deploy = Deploy(label, assembly, results, endpoint_chain(run))
    run.deploys.append(deploy)
    return deploy


@contextmanager
def rehearsed(workdir: Path) -> Iterator[RehearsalRun]:
    """Runs the three deploys and their checks; the emulator stays up inside the block."""
    with start_moto_server() as moto:
        run = RehearsalRun(rehearsal=Rehearsal(moto.url, REGION))
        try:
            first = deploy_all(run, "cdk deploy --all (new account)", synth(workdir / "first"))
            check_first_deploy(run, first)
            again = deploy_all(run, "cdk deploy --all (unchanged tree)", synth(workdir / "again"))
            check_unchanged(run, again)
            retrain = deploy_all(
                run,
                f"cdk deploy --all -c {' -c '.join(RETRAIN)}",
                synth(workdir / "retrain", RETRAIN),
            )
            check_retrain(run, retrain)
            longer = deploy_all(
                run,
                f"cdk deploy --all -c {' -c '.join(LONGER_RUN)}",
                synth(workdir / "longer-run", LONGER_RUN),
            )
            check_longer_run(run, longer)
            yield run
        finally:
            run.rehearsal.close()


@contextmanager
def rehearsed_teardown(workdir: Path, assembly: Path | None = None) -> Iterator[RehearsalRun]:
    """Deploys and destroys twice in an account of its own, once per removal policy.

    `assembly` is a synthesized default tree to reuse (it is synthesized when None).
    """
    with start_moto_server() as moto:
        run = RehearsalRun(rehearsal=Rehearsal(moto.url, REGION))
        try:
            default = assembly or synth(workdir / "teardown-default")
            deploy_all(run, "cdk deploy --all (new account)", default)
            retained = {"buckets": set(bucket_names(run))}
            destroy_all(run, "cdk destroy --all (storage.removal_policy: retain)", default)
            check_left_behind(run, "retain leaves exactly the five buckets", retained)
            deploy_all(run, "cdk deploy --all (after the teardown)", default)
            switched = deploy_all(
                run,
                f"cdk deploy --all -c {' -c '.join(DESTROY)}",
                synth(workdir / "teardown-destroy", DESTROY),
            )
            check_switch_to_destroy(run, switched)
            fill_buckets(run)
            destroy_all(
                run, "cdk destroy --all (storage.removal_policy: destroy)", switched.assembly
            )
            check_left_behind(run, "destroy leaves nothing of the app", retained)
            yield run
        finally:
            run.rehearsal.close()


def destroy_all(run: RehearsalRun, label: str, assembly: Path) -> Deploy:
    """`cdk destroy --all`: the stacks in reverse dependency order."""
    stacks = read_assembly(assembly)
    results = [run.rehearsal.destroy(stack) for stack in reversed(stacks)]
    deploy = Deploy(label, assembly, results, {})
    run.deploys.append(deploy)
    return deploy


# -- what a user would look at ------------------------------------------------------------------


def endpoint_chain(run: RehearsalRun) -> dict[str, str]:
    """The endpoint, its config and model, as SageMaker describes them."""
    sagemaker = run.rehearsal.client("sagemaker")
    # moto names the endpoint itself (it ignores EndpointName): find it through the stack.
    (arn,) = physical_ids(run, "serving", "AWS::SageMaker::Endpoint")
    name = arn.rsplit("/", 1)[-1]
    endpoint = sagemaker.describe_endpoint(EndpointName=name)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model_name = config["ProductionVariants"][0]["ModelName"]
    model = sagemaker.describe_model(ModelName=model_name)
    return {
        "endpoint": name,
        "config": endpoint["EndpointConfigName"],
        "model": model_name,
        "model_data_url": model["PrimaryContainer"]["ModelDataUrl"],
    }


def stack_name(run: RehearsalRun, suffix: str) -> str:
    return next(name for name in run.rehearsal.stacks if name.endswith(f"-{suffix}"))


def physical_ids(run: RehearsalRun, suffix: str, resource_type: str) -> list[str]:
    """The physical ids of the stack's resources of one type."""
    cfn = run.rehearsal.client("cloudformation")
    resources = cfn.list_stack_resources(StackName=stack_name(run, suffix))
    return [
        r["PhysicalResourceId"]
        for r in resources["StackResourceSummaries"]
        if r["ResourceType"] == resource_type
    ]


def outputs(run: RehearsalRun, suffix: str) -> dict[str, str]:
    return next(
        state.outputs for name, state in run.rehearsal.stacks.items() if name.endswith(f"-{suffix}")
    )


def training_jobs(run: RehearsalRun) -> list[dict[str, Any]]:
    sagemaker = run.rehearsal.client("sagemaker")
    summaries = sagemaker.list_training_jobs()["TrainingJobSummaries"]
    return [
        sagemaker.describe_training_job(TrainingJobName=s["TrainingJobName"]) for s in summaries
    ]


def check_first_deploy(run: RehearsalRun, deploy: Deploy) -> None:
    cfn = run.rehearsal.client("cloudformation")
    statuses = {
        result.name: cfn.describe_stacks(StackName=result.name)["Stacks"][0]["StackStatus"]
        for result in deploy.results
    }
    run.check(
        "all six stacks deployed",
        len(statuses) == 6
        and all(status.endswith("_COMPLETE") for status in statuses.values())
        and not any("ROLLBACK" in status for status in statuses.values()),
        ", ".join(f"{name} {status}" for name, status in statuses.items()),
    )
    s3 = run.rehearsal.client("s3")
    data = outputs(run, "storage")["DataBucketName"]
    uploaded = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=data).get("Contents", []))
    run.check(
        "dataset uploaded by CDK's handler",
        {"training/train.csv", "validation/validation.csv"} <= set(uploaded),
        f"s3://{data}: {', '.join(uploaded) or 'empty'}",
    )
    jobs = training_jobs(run)
    chain = deploy.endpoint
    run.check(
        "the endpoint serves the trained model",
        len(jobs) == 1
        and chain["model_data_url"]
        == jobs[0]["ModelArtifacts"]["S3ModelArtifacts"]
        == outputs(run, "training")["ModelDataUrl"],
        f"job {jobs[0]['TrainingJobName'] if jobs else None}; endpoint model {chain['model']} "
        f"reads {chain['model_data_url']}",
    )
    run.check(
        "the deploy waited for the job until its state-change event released it",
        len(waits(deploy)) == 1 and RELEASED_BY_EVENT in waits(deploy)[0],
        "; ".join(waits(deploy)) or "no wait condition",
    )
    client = outputs(run, "client")
    notification = s3.get_bucket_notification_configuration(Bucket=client["InputBucketName"])
    targets = {c["LambdaFunctionArn"] for c in notification.get("LambdaFunctionConfigurations", [])}
    run.check(
        "uploads to the input bucket fire the client Lambda",
        len(targets) == 1 and next(iter(targets)).endswith(":function:custom-sm-client"),
        f"{len(notification.get('LambdaFunctionConfigurations', []))} suffix rules -> "
        f"{', '.join(sorted(targets))}",
    )


def waits(deploy: Deploy) -> list[str]:
    """The wait conditions the training stack's deploy waited on, and what released each."""
    return [call for call in deploy.result("training").custom_calls if call.startswith("Wait ")]


def check_unchanged(run: RehearsalRun, deploy: Deploy) -> None:
    changed = [result.name for result in deploy.results if not result.skipped]
    run.check(
        "a second deploy of the unchanged tree changes nothing",
        not changed and len(training_jobs(run)) == 1,
        "every stack skipped" if not changed else f"deployed again: {', '.join(changed)}",
    )


def check_retrain(run: RehearsalRun, deploy: Deploy) -> None:
    old_chain = run.deploys[run.deploys.index(deploy) - 1].endpoint
    deployed = [result.name for result in deploy.results if not result.skipped]
    run.check(
        "a retrain deploys the training and serving stacks only",
        sorted(deployed)
        == sorted(r.name for r in deploy.results if r.name.endswith(("-training", "-serving"))),
        f"deployed: {', '.join(deployed)}",
    )
    jobs = training_jobs(run)
    newest = max(jobs, key=lambda job: job["CreationTime"])
    run.check(
        "a retrain starts a new training job",
        len(jobs) == 2 and outputs(run, "training")["TrainingJobName"] == newest["TrainingJobName"],
        f"{len(jobs)} jobs; the stack's job is {outputs(run, 'training')['TrainingJobName']}",
    )
    chain = deploy.endpoint
    serving = deploy.result("serving")
    run.check(
        "the endpoint gets a new model and endpoint config with the new model",
        chain["model"] != old_chain["model"]
        and chain["config"] != old_chain["config"]
        and chain["model_data_url"] == newest["ModelArtifacts"]["S3ModelArtifacts"]
        and {"Model", "EndpointConfig"} <= set(serving.replaced),
        f"model {old_chain['model']} -> {chain['model']}, config {old_chain['config']} -> "
        f"{chain['config']}, now reading {chain['model_data_url']}",
    )


def check_longer_run(run: RehearsalRun, deploy: Deploy) -> None:
    deployed = [result.name for result in deploy.results if not result.skipped]
    jobs = training_jobs(run)
    run.check(
        "a longer run time keeps the job, and its new wait condition is released at once",
        deployed == [stack_name(run, "training")]
        and len(jobs) == 2
        and len(waits(deploy)) == 1
        and RELEASED_BY_CUSTOM_RESOURCE in waits(deploy)[0],
        f"deployed: {', '.join(deployed)}; {len(jobs)} jobs; "
        + ("; ".join(waits(deploy)) or "no wait condition"),
    )


def bucket_names(run: RehearsalRun) -> list[str]:
    """The app's five buckets, as the storage stack holds them."""
    return physical_ids(run, "storage", "AWS::S3::Bucket")


def fill_buckets(run: RehearsalRun) -> None:
    """Objects in every bucket, two versions where a bucket keeps versions: emptying them is
    what `destroy` must do before CloudFormation can delete them."""
    s3 = run.rehearsal.client("s3")
    for bucket in bucket_names(run):
        for body in (b"first", b"second"):
            s3.put_object(Bucket=bucket, Key="runs/day1.csv", Body=body)


def app_resources(run: RehearsalRun) -> dict[str, set[str]]:
    """Everything of the app that exists in the account, by kind (bootstrap resources aside)."""
    client = run.rehearsal.client
    sagemaker = client("sagemaker")
    keys = client("kms")
    return {
        "stacks": {
            s["StackName"]
            for s in client("cloudformation").list_stacks()["StackSummaries"]
            if s["StackStatus"] != "DELETE_COMPLETE"
        },
        "buckets": {
            b["Name"]
            for b in client("s3").list_buckets()["Buckets"]
            if not b["Name"].startswith("cdk-")
        },
        "functions": {f["FunctionName"] for f in client("lambda").list_functions()["Functions"]},
        "roles": {r["RoleName"] for r in client("iam").list_roles()["Roles"]},
        "log groups": {
            g["logGroupName"] for g in client("logs").describe_log_groups()["logGroups"]
        },
        "topics": {t["TopicArn"] for t in client("sns").list_topics()["Topics"]},
        "queues": set(client("sqs").list_queues().get("QueueUrls", [])),
        "parameters": {
            p["Name"]
            for p in client("ssm").describe_parameters()["Parameters"]
            if not p["Name"].startswith("/cdk-bootstrap/")
        },
        "event rules": {r["Name"] for r in client("events").list_rules()["Rules"]},
        "models, endpoint configs, endpoints": {
            *(m["ModelName"] for m in sagemaker.list_models()["Models"]),
            *(
                c["EndpointConfigName"]
                for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]
            ),
            *(e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]),
        },
        "KMS keys not scheduled for deletion": {
            k["KeyId"]
            for k in keys.list_keys()["Keys"]
            if keys.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] != "PendingDeletion"
        },
        "training jobs": {
            j["TrainingJobName"] for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]
        },
    }


def check_left_behind(run: RehearsalRun, name: str, expected: dict[str, set[str]]) -> None:
    left = {
        kind: names
        for kind, names in app_resources(run).items()
        if names and kind not in KEPT_BY_DESIGN
    }
    detail = "; ".join(f"{kind}: {', '.join(sorted(names))}" for kind, names in left.items())
    run.check(name, left == expected, detail or "nothing")


def check_switch_to_destroy(run: RehearsalRun, deploy: Deploy) -> None:
    deployed = [result.name for result in deploy.results if not result.skipped]
    run.check(
        "switching to destroy changes only the storage stack",
        deployed == [stack_name(run, "storage")],
        f"deployed: {', '.join(deployed)}",
    )
