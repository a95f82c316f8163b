"""A first deploy that works on a fresh account, and keeps working: checked in template.yaml
and in the functions' dependency locks (no AWS account needed)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from local.template import build_context, load_template, resolve
from tests.conftest import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES = TEMPLATE.resources
ALARMS = {lid: r["Properties"] for lid, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def of_type(kind: str) -> dict[str, dict]:
    return {lid: resource for lid, resource in RESOURCES.items() if resource["Type"] == kind}


def test_cfn_lint_is_clean_informational_checks_included():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--include-checks", "I", "--", str(ROOT / "template.yaml")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ alarms
def test_alarms_publish_to_a_topic_cloudwatch_may_publish_to():
    """CloudWatch cannot use the AWS-managed SNS key (alias/aws/sns): such a topic drops every alarm."""
    for lid, topic in of_type("AWS::SNS::Topic").items():
        assert "alias/aws/sns" not in str(topic["Properties"].get("KmsMasterKeyId", "")), lid
    for lid, alarm in ALARMS.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlertsTopic"}], lid


def _dead_letter_queues() -> set[str]:
    queues = set()
    for queue in of_type("AWS::SQS::Queue").values():
        target = (queue["Properties"].get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        if target:
            queues.add(target["Fn::GetAtt"][0])
    for function in TEMPLATE.functions.values():
        target = (function.properties.get("DeadLetterQueue") or {}).get("TargetArn")
        if target:
            queues.add(target["Fn::GetAtt"][0])
    return queues


def test_every_dead_letter_queue_is_alarmed():
    dead = _dead_letter_queues()
    assert {"ReceiptDeadLetterQueue", "BackgroundDeadLetterQueue", "EventCancelDeadLetterQueue"} <= dead
    alarmed = {
        dimension["Value"]["Fn::GetAtt"][0]
        for alarm in ALARMS.values()
        for metric in [alarm, *[m.get("MetricStat", {}).get("Metric", {}) for m in alarm.get("Metrics", [])]]
        if metric.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        for dimension in metric.get("Dimensions", [])
    }
    assert dead <= alarmed, f"dead-letter queues without an alarm: {sorted(dead - alarmed)}"


def test_mail_refusals_and_bounces_are_alarmed():
    mail_code = (ROOT / "layers/common/python/ticketing/mail.py").read_text()
    assert 'add_metric(name="MessageRejected"' in mail_code
    metrics = {(a.get("Namespace"), a.get("MetricName")) for a in ALARMS.values()}
    assert ("Ticketing", "MessageRejected") in metrics
    bounces_code = (ROOT / "layers/common/python/ticketing/bounces.py").read_text()  # the one writer, used by receipts too
    assert 'add_metric(name="ReceiptsUndeliverable"' in bounces_code
    assert ("Ticketing", "ReceiptsUndeliverable") in metrics
    assert ("AWS/SES", "Reputation.BounceRate") in metrics and ("AWS/SES", "Reputation.ComplaintRate") in metrics


def test_ses_bounce_and_complaint_events_reach_the_mail_events_function():
    destination = RESOURCES["MailEventsDestination"]["Properties"]["EventDestination"]
    assert {"bounce", "complaint"} <= set(destination["MatchingEventTypes"])
    assert destination["SnsDestination"]["TopicARN"] == {"Ref": "MailEventsTopic"}
    function = TEMPLATE.functions["MailEventsFunction"].properties
    assert [e["Properties"]["Topic"] for e in function["Events"].values() if e["Type"] == "SNS"] == [{"Ref": "MailEventsTopic"}]
    assert function["DeadLetterQueue"]["TargetArn"] == {"Fn::GetAtt": ["BackgroundDeadLetterQueue", "Arn"]}  # alarmed


def test_every_email_is_sent_with_a_configuration_set_that_reports_bounces_and_complaints():
    [(name, _)] = of_type("AWS::SES::ConfigurationSet").items()
    assert TEMPLATE.data["Globals"]["Function"]["Environment"]["Variables"]["SES_CONFIGURATION_SET"] == {"Ref": name}
    destinations = [d["Properties"] for d in of_type("AWS::SES::ConfigurationSetEventDestination").values()]
    reported = {kind for d in destinations if d["ConfigurationSetName"] == {"Ref": name} and "SnsDestination" in d["EventDestination"]
                for kind in d["EventDestination"]["MatchingEventTypes"]}
    assert {"bounce", "complaint"} <= reported


# --------------------------------------------------------- a fresh account
def test_no_reserved_concurrency_a_new_account_cannot_give():
    assert "ReservedConcurrentExecutions" not in TEMPLATE.data["Globals"]["Function"]
    for function in TEMPLATE.functions.values():
        assert "ReservedConcurrentExecutions" not in function.properties, function.logical_id
    # The cancellation worker is limited at its queue instead (Stripe's rate).
    [event] = TEMPLATE.functions["EventCancelFunction"].properties["Events"].values()
    assert event["Properties"]["ScalingConfig"]["MaximumConcurrency"] == 2


def test_the_sender_and_the_publishable_key_are_required_parameters():
    parameters = TEMPLATE.data["Parameters"]
    for name, good, bad in (("SenderEmail", "tickets@example.org", "noreply"), ("StripePublishableKey", "pk_live_abc123", "sk_live_abc")):
        assert "Default" not in parameters[name], f"{name} must be given at deploy time"
        pattern = parameters[name]["AllowedPattern"]
        assert re.fullmatch(pattern, good) and not re.fullmatch(pattern, bad)


def test_what_holds_data_is_retained_when_the_stack_is_deleted_or_replaced():
    kinds = ("AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::Cognito::UserPool", "AWS::SecretsManager::Secret")
    holding = {lid: r for lid, r in RESOURCES.items() if r["Type"] in kinds}
    assert {"Table", "QrBucket", "UserPool", "StripeSecret", "QrSigningSecret"} <= set(holding)
    for lid, resource in holding.items():
        assert (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy")) == ("Retain", "Retain"), lid


@pytest.mark.parametrize(("stage", "account"), [("prod", "DEVELOPER"), ("dev", "COGNITO_DEFAULT")])
def test_cognito_mails_through_ses_in_production(stage, account):
    context = build_context(TEMPLATE, {"Stage": stage, "SenderEmail": "tickets@example.org"}, region="eu-west-1")
    config = resolve(RESOURCES["UserPool"]["Properties"]["EmailConfiguration"], context)
    assert config["EmailSendingAccount"] == account
    if stage == "prod":
        assert config["From"] == "tickets@example.org"
        assert config["SourceArn"] == "arn:aws:ses:eu-west-1:123456789012:identity/tickets@example.org"


def test_a_changed_email_takes_effect_only_once_verified():
    settings = RESOURCES["UserPool"]["Properties"]["UserAttributeUpdateSettings"]
    assert settings["AttributesRequireVerificationBeforeUpdate"] == ["email"]


def test_policies_name_only_iam_actions_and_ses_only_the_sender():
    for function in TEMPLATE.functions.values():
        for statement in function.properties["Policies"][0]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert "dynamodb:TransactWriteItems" not in actions, f"{function.logical_id}: not an IAM action"
            if any(action.startswith("ses:") for action in actions):
                assert actions == ["ses:SendEmail"]
                assert [r["Fn::Sub"].rsplit(":", 1)[1] for r in statement["Resource"]] == [
                    "identity/${SenderEmail}", "configuration-set/${MailConfigurationSet}"]


# ------------------------------------------------------ dependency locks
TARGET = {  # the Lambda runtime the locks are for (template: python3.12, x86_64)
    "python_version": "3.12", "python_full_version": "3.12.8", "sys_platform": "linux", "platform_system": "Linux",
    "platform_machine": "x86_64", "platform_python_implementation": "CPython", "implementation_name": "cpython",
    "os_name": "posix", "extra": "",
}
PINNED = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.!+_-]+)")
FUNCTIONS = sorted(Path(f.code_uri).name for f in TEMPLATE.functions.values())


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        found = PINNED.fullmatch(line)
        assert found, f"{path.relative_to(ROOT)}: {line!r} is not pinned with =="
        pins[canonicalize_name(found.group(1))] = found.group(2)
    return pins


def _closure(names) -> set[str]:
    """Every distribution `names` need on the runtime, from the installed distributions' metadata."""
    seen, todo = set(), [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.distribution(name).requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(TARGET):
                todo.append(canonicalize_name(requirement.name))
    return seen


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_dependency_is_pinned_from_the_lock_and_the_tests_run_those_versions(function):
    folder = ROOT / "functions" / function
    direct, locked = _pins(folder / "requirements.in"), _pins(folder / "requirements.txt")
    assert "botocore" in direct, "botocore comes with pynamodb (and our code imports it): pin it, never take what pip finds"
    assert {name: locked.get(name) for name in direct} == direct, "requirements.txt is stale: run `make lock`"
    needed = _closure(direct)
    assert set(locked) == needed, f"`make lock`: missing {sorted(needed - set(locked))}, extra {sorted(set(locked) - needed)}"
    installed = {name: importlib.metadata.version(name) for name in locked}
    assert installed == locked, "the tests must run the versions deployed: `make venv` installs with the locks as constraints"


def test_a_package_has_one_version_across_the_functions():
    versions: dict[str, set[str]] = {}
    for function in FUNCTIONS:
        for name, version in _pins(ROOT / "functions" / function / "requirements.txt").items():
            versions.setdefault(name, set()).add(version)
    assert {name: v for name, v in versions.items() if len(v) > 1} == {}


def test_the_receipts_function_carries_no_signing_library():
    locked = _pins(ROOT / "functions/receipts/requirements.txt")
    assert "cryptography" not in locked and "qrcode" in locked


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_samconfig_names_a_region_and_cannot_deploy_its_placeholders(environment):
    import shlex
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())[environment]["deploy"]["parameters"]
    assert config["region"]
    overrides = dict(item.split("=", 1) for item in shlex.split(config["parameter_overrides"]))
    assert overrides["Stage"] == environment
    parameters = TEMPLATE.data["Parameters"]
    for name in ("SenderEmail", "StripePublishableKey"):  # yours to set: the placeholders fail the template's checks
        assert not re.fullmatch(parameters[name]["AllowedPattern"], overrides[name]), name
