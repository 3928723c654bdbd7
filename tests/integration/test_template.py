"""The SAM application (template.yaml, samconfig.toml, the workflows), checked offline: the linters
and the IaC scanner pass, and the template agrees with the code it deploys (handlers, table schema,
state machine, settings, metrics).

The linters run from the tools venv (``make tools``); a missing tool fails with what to run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from imgsearch_devkit.local.template import StackTemplate
from template_support import (
    REGION,
    REPO,
    STACK_NAME,
    TEMPLATE,
    function_environment,
    functions,
    load_template,
    resolve,
    stack,
    tool,
)

from imgsearch.store import table_definition

ASL = REPO / "statemachine" / "index_pipeline.asl.json"
WORKFLOWS = REPO / ".github" / "workflows"
TOOL_ENV = {
    **os.environ,
    "AWS_DEFAULT_REGION": "us-east-1",
    "SAM_CLI_TELEMETRY": "0",
    "BC_SKIP_MAPPING": "TRUE",  # checkov: no call home for guideline mappings
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def run(command: list[str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=REPO, env=TOOL_ENV, capture_output=True, text=True, timeout=timeout
    )


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in template["Resources"].items() if r["Type"] == kind}


def walk(node: Any):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# ---------------------------------------------------------------- linters and scanner


@pytest.mark.slow
def test_cfn_lint_is_clean():
    result = run([str(Path(sys.executable).parent / "cfn-lint"), str(TEMPLATE)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_sam_validate_with_lint_is_clean():
    sam = tool("sam")
    translated = run([sam, "validate", "--template", str(TEMPLATE)])
    assert translated.returncode == 0, translated.stdout + translated.stderr
    linted = run([sam, "validate", "--lint", "--template", str(TEMPLATE)])
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "is a valid SAM Template" in linted.stdout


@pytest.mark.slow
@pytest.mark.parametrize("access_logs", ["false", "true"])
def test_checkov_passes_and_every_suppression_says_why(access_logs, tmp_path):
    # checkov leaves out resources whose Condition is false with the defaults: the access-log
    # bucket is scanned only in a copy that turns EnableAccessLogs on.
    scanned = TEMPLATE
    if access_logs == "true":
        text = TEMPLATE.read_text()
        default = '  EnableAccessLogs:\n    Type: String\n    Default: "false"'
        assert default in text
        scanned = tmp_path / "template.yaml"
        scanned.write_text(text.replace(default, default.replace('"false"', '"true"')))
    result = run(
        [
            tool("checkov"),
            "--file",
            str(scanned),
            "--framework",
            "cloudformation",
            "--skip-download",
            "--output",
            "json",
        ]
    )
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout)
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in report["results"].get("failed_checks", [])
    ]
    assert not failed, "checkov findings:\n" + "\n".join(failed)
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] >= 30, report["summary"]
    for skipped in report["results"].get("skipped_checks", []):
        reason = (skipped["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) >= 40 and reason != "No comment provided", (
            f"{skipped['check_id']} on {skipped['resource']} is suppressed without a reason"
        )
    assert result.returncode == 0, result.stderr[-2000:]


# ---------------------------------------------------------------- alarms


def alarm_metrics(alarm: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(namespace, metric name, dimensions) of a plain or a metric-math alarm."""
    props = alarm["Properties"]
    if "MetricName" in props:
        return [(props["Namespace"], props["MetricName"], props.get("Dimensions", []))]
    return [
        (
            m["MetricStat"]["Metric"]["Namespace"],
            m["MetricStat"]["Metric"]["MetricName"],
            m["MetricStat"]["Metric"].get("Dimensions", []),
        )
        for m in props["Metrics"]
        if "MetricStat" in m
    ]


def alarms_on(template: dict[str, Any], namespace: str, metric: str) -> dict[str, dict[str, Any]]:
    return {
        name: alarm
        for name, alarm in resources_of(template, "AWS::CloudWatch::Alarm").items()
        if any(ns == namespace and m == metric for ns, m, _ in alarm_metrics(alarm))
    }


def test_every_alarm_notifies_the_alerts_topic(template):
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    assert alarms
    for name, alarm in alarms.items():
        assert {"Ref": "AlertsTopic"} in alarm["Properties"]["AlarmActions"], name


def test_every_function_has_an_errors_alarm(template):
    errors_alarms = alarms_on(template, "AWS/Lambda", "Errors").values()
    for name in functions(template):
        watched = [
            alarm
            for alarm in errors_alarms
            if {"Name": "FunctionName", "Value": {"Ref": name}} in alarm_metrics(alarm)[0][2]
            and not any(d["Name"] == "ExecutedVersion" for d in alarm_metrics(alarm)[0][2])
        ]
        assert watched, f"{name} has no Errors alarm"


@pytest.mark.parametrize(
    ("namespace", "metric", "watches"),
    [
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "IngestDeadLetterQueue"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "IngestQueue"),
        ("AWS/ApiGateway", "5xx", "HttpApi"),
        ("AWS/ApiGateway", "Latency", "HttpApi"),
        ("AWS/States", "ExecutionsFailed", "IndexPipeline"),
        ("AWS/States", "ExecutionsTimedOut", "IndexPipeline"),
        ("imgsearch", "IndexAgeSeconds", "AWS::StackName"),
        ("imgsearch", "ValidationRecallAt10", "AWS::StackName"),
    ],
)
def test_operational_alarm_exists(template, namespace, metric, watches):
    alarms = alarms_on(template, namespace, metric)
    assert alarms, f"no alarm on {namespace} {metric}"
    dimensions = [d for alarm in alarms.values() for _, _, ds in alarm_metrics(alarm) for d in ds]
    assert any(watches in json.dumps(d["Value"]) for d in dimensions), (metric, dimensions)


def test_threshold_alarms_follow_their_parameters(template):
    recall = next(iter(alarms_on(template, "imgsearch", "ValidationRecallAt10").values()))
    assert recall["Properties"]["Threshold"] == {"Ref": "GateMinRecall"}
    assert recall["Properties"]["ComparisonOperator"] == "LessThanThreshold"
    age = next(iter(alarms_on(template, "imgsearch", "IndexAgeSeconds").values()))["Properties"]
    expression = next(m["Expression"] for m in age["Metrics"] if "Expression" in m)
    assert "${IndexSchedule}" in json.dumps(expression) and age["Threshold"] == 2
    latency = next(iter(alarms_on(template, "AWS/ApiGateway", "Latency").values()))["Properties"]
    assert latency["ExtendedStatistic"] == "p99"


def test_custom_metrics_are_ones_the_code_emits(template):
    """Every metric in the imgsearch namespace (alarms, dashboard) is named in the code."""
    files = [*(REPO / "layers" / "imgsearch").rglob("*.py"), *(REPO / "functions").rglob("*.py")]
    source = "\n".join(p.read_text() for p in files)
    body = json.dumps(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    named = set(re.findall(r'\[\\"imgsearch\\", \\"(\w+)\\"', body))
    for alarm in resources_of(template, "AWS::CloudWatch::Alarm").values():
        named |= {m for ns, m, _ in alarm_metrics(alarm) if ns == "imgsearch"}
    assert {"IndexAgeSeconds", "ValidationRecallAt10", "ImagesEmbedded"} <= named
    for metric in named:
        assert f'"{metric}"' in source, f"no code emits the metric {metric}"


def test_query_function_deploys_by_canary_rolled_back_by_alarms(template):
    query = template["Resources"]["QueryFunction"]["Properties"]
    assert query["AutoPublishAlias"] == "live"
    preference = query["DeploymentPreference"]
    assert template["Parameters"]["DeploymentType"]["Default"].startswith("Canary")
    assert preference["Type"] == {"Ref": "DeploymentType"}
    metrics = set()
    for ref in preference["Alarms"]:
        alarm = template["Resources"][ref["Ref"]]
        ((_, metric, dimensions),) = alarm_metrics(alarm)
        new_version = {"Fn::GetAtt": ["QueryFunction", "Version.Version"]}
        assert {"Name": "ExecutedVersion", "Value": new_version} in dimensions
        metrics.add(metric)
    assert metrics == {"Errors", "Duration"}
    # The API reaches the function only through the alias whose traffic CodeDeploy shifts.
    integration = template["Resources"]["HttpApiIntegration"]["Properties"]
    assert integration["IntegrationUri"] == {"Ref": "QueryFunction.Alias"}
    assert integration["PayloadFormatVersion"] == "2.0"


# ---------------------------------------------------------------- template <-> code


def test_every_function_runs_the_shared_image(template):
    metadata = set()
    for name, function in functions(template).items():
        props = function["Properties"]
        assert props["PackageType"] == "Image", name
        command = props["ImageConfig"]["Command"]
        assert len(command) == 1 and command[0].endswith(".app.handler"), (name, command)
        for size in ("MemorySize", "Timeout"):
            assert props.get(size) or template["Globals"]["Function"].get(size), (name, size)
        build = {k: v for k, v in function["Metadata"].items() if k != "checkov"}
        assert build["Dockerfile"] == "functions/Dockerfile" and build["DockerContext"] == "."
        metadata.add(json.dumps(build, sort_keys=True))
    assert len(metadata) == 1, "functions differ in build Metadata: sam build would build twice"


def test_table_schema_matches_the_store(template):
    table = template["Resources"]["EmbeddingsTable"]["Properties"]
    expected = table_definition("t")

    def normal(items: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(i, sort_keys=True) for i in items)

    assert normal(table["AttributeDefinitions"]) == normal(expected["AttributeDefinitions"])
    assert table["KeySchema"] == expected["KeySchema"]
    assert normal(table["GlobalSecondaryIndexes"]) == normal(expected["GlobalSecondaryIndexes"])
    assert table["BillingMode"] == expected["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True


def asl_states(states: dict[str, Any]):
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from asl_states(branch["States"])
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from asl_states(processor["States"])


@pytest.mark.parametrize(
    ("machine", "asl"),
    [
        ("IndexPipeline", ASL),
        ("BackfillStateMachine", REPO / "statemachine" / "backfill.asl.json"),
        ("ModelRolloutStateMachine", REPO / "statemachine" / "model_rollout.asl.json"),
    ],
)
def test_every_state_machine_task_names_a_template_function(template, machine, asl):
    assert asl.is_file(), f"{asl.relative_to(REPO)} is missing; template.yaml deploys it"
    pipeline = resources_of(template, "AWS::Serverless::StateMachine")[machine]
    props = pipeline["Properties"]
    assert props["DefinitionUri"] == str(asl.relative_to(REPO))
    substitutions = props["DefinitionSubstitutions"]
    text = asl.read_text()
    definition = json.loads(text)
    used = set(re.findall(r"\$\{(\w+)\}", text))
    assert used == set(substitutions), "ASL placeholders and DefinitionSubstitutions differ"

    template_functions = functions(template)
    tasks = [(n, s) for n, s in asl_states(definition["States"]) if s["Type"] == "Task"]
    assert tasks
    for name, state in tasks:
        resource = state["Resource"]
        if resource.startswith("arn:aws:states:::sns:"):
            topic = state["Parameters"]["TopicArn"]
            assert substitutions[topic.strip("${}")] == {"Ref": "AlertsTopic"}, name
            continue
        if resource.startswith("arn:aws:states:::states:startExecution"):
            nested = state["Parameters"]["StateMachineArn"].strip("${}")
            machine_ref = substitutions[nested]
            assert machine_ref["Ref"] in template["Resources"], name
            continue
        if resource.startswith("arn:aws:states:::lambda:invoke"):
            resource = state["Parameters"]["FunctionName"]
        placeholder = re.fullmatch(r"\$\{(\w+)\}", resource)
        assert placeholder, f"Task {name} names no substituted function: {resource}"
        target = substitutions[placeholder[1]]
        logical = target["Fn::GetAtt"][0]
        assert logical in template_functions, f"Task {name} -> {logical}: not a template function"
        invocable = [
            p["LambdaInvokePolicy"]["FunctionName"]
            for p in props["Policies"]
            if isinstance(p, dict) and "LambdaInvokePolicy" in p
        ]
        assert {"Ref": logical} in invocable, f"the state machine may not invoke {logical}"


def test_template_variables_are_ones_the_configuration_reads(template):
    config = (REPO / "layers" / "imgsearch" / "core" / "config.py").read_text()
    known = set(re.findall(r'env\(\s*"IMGSEARCH_([A-Z0-9_]+)"', config)) | {"THREADS"}
    variables = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for function in functions(template).values():
        variables |= set(function["Properties"].get("Environment", {}).get("Variables", {}))
    for name in variables:
        if name.startswith("IMGSEARCH_"):
            assert name.removeprefix("IMGSEARCH_") in known, f"config.py never reads {name}"
        else:
            assert name.startswith("POWERTOOLS_"), name
    powertools = template["Globals"]["Function"]["Environment"]["Variables"]
    assert powertools["POWERTOOLS_METRICS_NAMESPACE"] == "imgsearch"


def test_star_resources_carry_a_written_reason(template):
    """An Allow on Resource "*" needs a Sid and a comment between the Sid and the Resource."""
    lines = TEMPLATE.read_text().splitlines()
    for node in walk(template["Resources"]):
        if not (isinstance(node, dict) and node.get("Effect") == "Allow" and "Action" in node):
            continue
        resources = node.get("Resource")
        if resources != "*" and not (isinstance(resources, list) and "*" in resources):
            continue
        sid = node.get("Sid")
        assert sid, f"Allow on * without a Sid: {node}"
        start = next(i for i, line in enumerate(lines) if line.strip() == f"- Sid: {sid}")
        end = next(i for i in range(start, len(lines)) if lines[i].strip().startswith("Resource:"))
        assert any(line.strip().startswith("#") for line in lines[start:end]), (
            f"statement {sid} allows * without a comment saying why"
        )


def test_s3_access_stays_inside_the_stack_buckets_or_the_model_bundle(template):
    """The stack's bucket, the user's ExistingBucketName (test_iam.py: only read), the bundle or
    the inventory reports (read by the backfill's listing)."""
    for name, function in functions(template).items():
        for node in walk(function["Properties"].get("Policies", [])):
            if isinstance(node, dict) and node.get("Effect") == "Allow":
                actions = node["Action"] if isinstance(node["Action"], list) else [node["Action"]]
                if not any(a.startswith("s3:") for a in actions):
                    continue
                assert "s3:*" not in actions, name
                text = json.dumps(node["Resource"])
                assert any(
                    bucket in text
                    for bucket in (
                        "ImageBucket",
                        "ExistingBucketName",
                        "ModelBundleUri",
                        "BackfillInventoryUri",
                    )
                ), (name, node["Sid"])


def test_outputs_the_operator_cli_reads(template):
    outputs = set(template["Outputs"])
    assert {
        "ApiUrl",
        "BucketName",
        "TableName",
        "IngestQueueUrl",
        "DeadLetterQueueUrl",
        "StateMachineArn",
        "AlertsTopicArn",
    } <= outputs


def test_parameters_the_issue_names(template):
    parameters = template["Parameters"]
    for name in (
        "Stage",
        "AlertEmail",
        "IndexSchedule",
        "ModelBundleUri",
        "ImagePrefix",
        "GateMinRecall",
        "AuthMode",
        "JwtIssuer",
        "JwtAudience",
        "QueryProvisionedConcurrency",
    ):
        assert name in parameters, name
    assert parameters["AuthMode"]["AllowedValues"] == ["none", "IAM", "JWT"]
    assert parameters["QueryProvisionedConcurrency"]["Default"] == 0
    assert parameters["ModelBundleUri"]["Default"] == ""


# ---------------------------------------------------------------- safe defaults


def refusals(template: dict[str, Any], **overrides: str) -> list[str]:
    """The AssertDescriptions of the template's Rules that these parameters break (defaults
    for the rest), evaluated as CloudFormation would."""
    parameters = template["Parameters"]
    values = {name: str(spec.get("Default", "")) for name, spec in parameters.items()} | overrides

    def value(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        ((function, argument),) = node.items()
        if function == "Ref":
            text = values[argument]
            listed = parameters[argument]["Type"] == "CommaDelimitedList"
            return text.split(",") if listed else text
        if function == "Fn::Equals":
            return value(argument[0]) == value(argument[1])
        if function == "Fn::Not":
            return not value(argument[0])
        if function == "Fn::Contains":
            return value(argument[1]) in value(argument[0])
        if function == "Fn::Join":
            return argument[0].join(value(argument[1]))
        raise AssertionError(f"a rule uses {function}, which this test does not evaluate")

    refused = []
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not value(rule["RuleCondition"]):
            continue
        refused += [a["AssertDescription"] for a in rule["Assertions"] if not value(a["Assert"])]
    return refused


def test_the_api_authenticates_by_default_and_says_what_none_means(template):
    auth = template["Parameters"]["AuthMode"]
    assert auth["Default"] == "IAM"
    for text in (auth["Description"], auth["ConstraintDescription"]):
        assert "anyone" in text and "personal stack" in text, text
    assert refusals(template) == []
    assert refusals(template, AuthMode="none") == []


@pytest.mark.parametrize("auth", ["IAM", "JWT"])
def test_wildcard_cors_is_refused_with_authentication(template, auth):
    jwt = {"JwtIssuer": "https://issuer.example", "JwtAudience": "aud"} if auth == "JWT" else {}
    assert refusals(template, AuthMode=auth, **jwt) == []
    assert refusals(template, AuthMode=auth, CorsAllowOrigins="https://app.example", **jwt) == []
    refused = refusals(template, AuthMode=auth, CorsAllowOrigins="https://a.example,*", **jwt)
    assert refused and "CorsAllowOrigins" in refused[0]
    assert refusals(template, AuthMode="none", CorsAllowOrigins="*") == []


def test_no_cors_configuration_unless_origins_are_named(template):
    assert template["Parameters"]["CorsAllowOrigins"]["Default"] == ""
    cors = stack(template).properties("HttpApi").get("CorsConfiguration")
    assert resolve(template, cors) is None
    named = StackTemplate(template, STACK_NAME, REGION, {"CorsAllowOrigins": "https://a.example"})
    resolved = named.resolve(named.properties("HttpApi")["CorsConfiguration"])
    assert resolved is not None and resolved["AllowMethods"] == ["GET", "POST", "OPTIONS"]
    assert cors["Fn::If"][1]["AllowOrigins"] == {"Ref": "CorsAllowOrigins"}


def test_alerts_topic_is_encrypted_with_a_key_cloudwatch_may_use(template):
    topic = template["Resources"]["AlertsTopic"]
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": ["AlertsKey", "Arn"]}
    assert "checkov" not in topic.get("Metadata", {}), "CKV_AWS_26 needs no suppression now"
    key = template["Resources"]["AlertsKey"]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [
        s for s in statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert len(cloudwatch) == 1
    assert set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    # Without the account statement no IAM policy could grant the key (nor anyone manage it).
    assert any(
        s["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
        for s in statements
    )


def test_access_logs_are_an_option_delivered_by_the_logging_service(template):
    parameter = template["Parameters"]["EnableAccessLogs"]
    assert parameter["Default"] == "false" and parameter["AllowedValues"] == ["true", "false"]
    off = stack(template)
    assert resolve(template, off.properties("ImageBucket")["LoggingConfiguration"]) is None
    on = StackTemplate(template, STACK_NAME, REGION, {"EnableAccessLogs": "true"})
    assert on.resolve.condition("HasAccessLogs") and not off.resolve.condition("HasAccessLogs")
    for name in ("AccessLogBucket", "AccessLogBucketPolicy"):
        assert on.cloudformation["Resources"][name]["Condition"] == "HasAccessLogs"
    logging = on.resolve(on.properties("ImageBucket")["LoggingConfiguration"])
    log_bucket = on.resolve.ref("AccessLogBucket")
    assert logging["DestinationBucketName"] == log_bucket
    encryption = on.properties("AccessLogBucket")["BucketEncryption"]
    rule = encryption["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert rule["SSEAlgorithm"] == "AES256", "S3 delivers access logs to SSE-S3 targets only"
    policy = on.resolve(on.properties("AccessLogBucketPolicy")["PolicyDocument"])
    (delivery,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == "s3:PutObject"
    assert delivery["Resource"] == f"arn:aws:s3:::{log_bucket}/{logging['LogFilePrefix']}*"
    image_bucket = on.resolve.ref("ImageBucket")
    assert delivery["Condition"]["ArnLike"]["aws:SourceArn"] == f"arn:aws:s3:::{image_bucket}"
    assert delivery["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"


LAMBDA_SYNC_PAYLOAD = 6 * 1024 * 1024
"""Lambda's limit on a synchronous invocation's event (6 MB)."""


def test_query_upload_limit_is_one_parameter_under_lambdas_payload_limit(template):
    parameter = template["Parameters"]["QueryMaxUploadBytes"]
    assert parameter["Default"] == 4 * 1024 * 1024
    variables = template["Resources"]["QueryFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["IMGSEARCH_MAX_UPLOAD_BYTES"] == {"Ref": "QueryMaxUploadBytes"}
    assert function_environment(template, "QueryFunction")["IMGSEARCH_MAX_UPLOAD_BYTES"] == str(
        parameter["Default"]
    )
    # API Gateway base64-encodes a binary body: 4 bytes for every 3, plus the event's headers.
    assert 4 * -(-parameter["MaxValue"] // 3) < LAMBDA_SYNC_PAYLOAD - 100_000


def readme_parameters() -> dict[str, str]:
    """The README's parameter table: parameter -> the default it states ("empty" is "")."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Parameters", 1)[1].split("\n### ", 1)[0]
    found: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`(\w+)`", cells[0])
        defaults = [""] if cells[1] == "empty" else re.findall(r"`([^`]*)`", cells[1])
        if len(defaults) == 1:
            defaults *= len(names)
        assert len(defaults) == len(names), line
        found.update(zip(names, defaults, strict=True))
    return found


def test_readme_lists_every_parameter_with_its_default(template):
    stated = readme_parameters()
    assert set(stated) == set(template["Parameters"])
    for name, spec in template["Parameters"].items():
        assert stated[name] == str(spec.get("Default", "")), name


# ---------------------------------------------------------------- samconfig and CI/CD


def test_samconfig_environments(template):
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    assert config["version"] == 0.1
    for env in ("default", "staging", "prod"):
        deploy = config[env]["deploy"]["parameters"]
        assert deploy["stack_name"], env
        assert "CAPABILITY_IAM" in deploy["capabilities"], env
        assert deploy.get("resolve_image_repos") or deploy.get("image_repository"), env
        pairs = re.findall(r'(\w+)=("[^"]*"|\S+)', deploy.get("parameter_overrides", ""))
        overrides = dict(pairs)
        assert overrides.get("Stage"), env
        unknown = set(overrides) - set(template["Parameters"])
        assert not unknown, f"{env} overrides unknown parameters {unknown}"
    assert config["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
    for env in ("default", "staging", "prod"):  # none is a choice made on the command line
        assert "AuthMode=IAM" in config[env]["deploy"]["parameters"]["parameter_overrides"], env
    assert config["staging"]["deploy"]["parameters"]["confirm_changeset"] is False


def load_workflows() -> dict[str, dict[str, Any]]:
    found = {p.name: yaml.safe_load(p.read_text()) for p in sorted(WORKFLOWS.glob("*.yml"))}
    assert found, "no workflows in .github/workflows"
    return found


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    return on if isinstance(on, dict) else {name: None for name in on}


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(json.dumps(step) for step in job.get("steps", []))


def test_pull_requests_run_tests_and_linters():
    runs = [w for w in load_workflows().values() if "pull_request" in triggers(w)]
    assert runs, "no workflow runs on pull_request"
    text = "\n".join(steps_text(job) for w in runs for job in w["jobs"].values())
    for command in ("make test", "cfn-lint template.yaml", "sam validate --lint"):
        assert command in text, command


def test_main_deploys_staging_smoke_tests_then_prod_behind_approval():
    deploys = [
        w for w in load_workflows().values() if "main" in json.dumps(triggers(w).get("push") or {})
    ]
    assert len(deploys) == 1
    workflow = deploys[0]
    jobs = workflow["jobs"]
    staging = next(j for j in jobs.values() if "--config-env staging" in steps_text(j))
    prod_name, prod = next((n, j) for n, j in jobs.items() if "--config-env prod" in steps_text(j))
    for job in (staging, prod):
        text = steps_text(job)
        assert "aws-actions/configure-aws-credentials" in text and "role-to-assume" in text
        assert job.get("permissions", workflow.get("permissions", {})).get("id-token") == "write"
    assert "scripts/smoke_test.py" in steps_text(staging)
    assert (REPO / "scripts" / "smoke_test.py").is_file()
    environment = prod.get("environment")
    assert environment and (environment if isinstance(environment, str) else environment["name"])
    needs = prod.get("needs")
    staging_name = next(n for n, j in jobs.items() if j is staging)
    assert staging_name in (needs if isinstance(needs, list) else [needs]), prod_name


def test_one_image_is_built_and_the_same_package_deploys_to_staging_then_prod():
    """Prod runs what staging's smoke test ran: one build, one package, two deploys of it."""
    (workflow,) = [
        w for w in load_workflows().values() if "main" in json.dumps(triggers(w).get("push") or {})
    ]
    jobs = workflow["jobs"]
    builders = [name for name, job in jobs.items() if "sam build" in steps_text(job)]
    assert len(builders) == 1, builders
    builder = jobs[builders[0]]
    package = next(s for s in builder["steps"] if "sam package" in s.get("run", ""))
    assert "--output-template-file packaged.yaml" in " ".join(package["run"].split())
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in builder["steps"]), (
        "the package job uploads packaged.yaml"
    )
    deployers = [name for name, job in jobs.items() if "sam deploy" in steps_text(job)]
    assert sorted(deployers) == ["prod", "staging"]
    for name in deployers:
        job = jobs[name]
        steps = job["steps"]
        assert any(s.get("uses", "").startswith("actions/download-artifact") for s in steps)
        deploy = next(s["run"] for s in steps if "sam deploy" in s.get("run", ""))
        assert "--template-file packaged.yaml" in deploy, name
        assert "sam build" not in steps_text(job), name
    prod_needs = jobs["prod"]["needs"]
    assert jobs["staging"]["needs"] == builders[0]
    assert "staging" in ([prod_needs] if isinstance(prod_needs, str) else prod_needs)


def test_smoke_test_script_documents_its_use():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "smoke_test.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--stack-name" in result.stdout
