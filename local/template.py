"""Read a SAM template (template.yaml) into plain data for the local stack.

Public API:

* ``load_template(path) -> Template``: parse the template (CloudFormation
  short-form tags such as ``!Ref``/``!Sub``/``!GetAtt`` become their long-form
  dicts ``{"Ref": ...}``, ``{"Fn::Sub": ...}``, ``{"Fn::GetAtt": [...]}``) and
  collect functions, HTTP routes, authorizers, CORS, Schedule and SQS events
  and SQS queues as dataclasses.
* ``load_yaml(text)``: the CloudFormation-aware YAML loader on its own.
* ``build_context(template, parameters=None, physical_names=None, region=None,
  endpoint_url=None) -> dict``: the values ``resolve`` looks names up in.
* ``resolve(value, context)``: resolve intrinsic functions; raises
  ``Unresolved`` when a name is unknown.
* ``resolve_environment(variables, context, overrides=None) -> dict[str, str]``:
  resolve a function's environment variables, dropping unresolvable ones.

Nothing here talks to AWS; values are fake-but-plausible local ones.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

__all__ = [
    "ACCOUNT_ID",
    "Authorizer",
    "Cors",
    "Function",
    "HttpApi",
    "Queue",
    "Route",
    "ScheduleEvent",
    "SqsEvent",
    "Template",
    "Unresolved",
    "build_context",
    "load_template",
    "load_yaml",
    "resolve",
    "resolve_environment",
]

ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
DEFAULT_TIMEOUT = 3
DEFAULT_MEMORY = 128
IMPLICIT_HTTP_API = "ServerlessHttpApi"


# --------------------------------------------------------------------- YAML


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation short-form intrinsic tags."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {"Fn::" + tag_suffix: value}


CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_yaml(text: str) -> Any:
    """Parse YAML text, turning ``!Tag value`` into ``{"Fn::Tag": value}`` (``Ref``/``Condition`` stay bare)."""
    return yaml.load(text, Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass


# -------------------------------------------------------------- dataclasses


@dataclass
class Function:
    """An ``AWS::Serverless::Function`` with Globals applied.

    ``environment`` holds the raw (possibly intrinsic) values, Globals merged
    with the function's own; use ``resolve_environment`` to get strings.
    ``layers`` are absolute directories to put on ``sys.path`` (ContentUri/python).
    """

    logical_id: str
    code_uri: str
    handler: str
    module: str
    function: str
    runtime: str | None
    timeout: int
    memory: int
    environment: dict[str, Any]
    layers: list[str]
    properties: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass
class Route:
    """One HttpApi event: ``method`` is upper case (``ANY`` for any), ``path`` as declared.

    ``authorizer`` is the authorizer name, or ``None`` for a public route.
    ``path == "$default"`` marks the ``$default`` route.
    """

    method: str
    path: str
    function: str
    authorizer: str | None
    api_id: str
    event_name: str

    @property
    def route_key(self) -> str:
        """The API Gateway route key, e.g. ``"GET /api/events/{event_id}"`` or ``"$default"``."""
        if self.path == "$default":
            return "$default"
        return f"{self.method} {self.path}"


@dataclass
class Authorizer:
    """A JWT authorizer: ``identity_source`` like ``$request.header.Authorization``; issuer/audience raw."""

    name: str
    identity_source: str
    issuer: Any
    audience: list[Any]

    @property
    def header(self) -> str:
        """The lower-cased request header the token comes from (``authorization`` by default)."""
        source = self.identity_source
        if isinstance(source, list):
            source = source[0] if source else ""
        prefix = "$request.header."
        if isinstance(source, str) and source.startswith(prefix):
            return source[len(prefix):].lower()
        return "authorization"


@dataclass
class Cors:
    """An HttpApi CorsConfiguration; ``allow_origins`` may hold unresolved intrinsics."""

    allow_origins: list[Any]
    allow_methods: list[str]
    allow_headers: list[str]
    expose_headers: list[str]
    max_age: int | None
    allow_credentials: bool


@dataclass
class HttpApi:
    """An ``AWS::Serverless::HttpApi`` (or the implicit ``ServerlessHttpApi``)."""

    logical_id: str
    authorizers: dict[str, Authorizer]
    default_authorizer: str | None
    cors: Cors | None


@dataclass
class ScheduleEvent:
    """A ``Schedule``/``ScheduleV2`` event: ``expression`` like ``rate(5 minutes)`` or ``cron(...)``."""

    function: str
    name: str
    expression: Any
    enabled: bool = True


@dataclass
class SqsEvent:
    """An ``SQS`` event: ``queue`` is the queue's logical id (or a literal ARN/name)."""

    function: str
    name: str
    queue: str
    batch_size: int = 10
    report_batch_item_failures: bool = False
    enabled: bool = True


@dataclass
class Queue:
    """An ``AWS::SQS::Queue``: ``queue_name`` is the literal QueueName, else ``None``."""

    logical_id: str
    queue_name: str | None
    properties: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def local_name(self) -> str:
        """Name of the queue locally: the literal QueueName, else the logical id."""
        return self.queue_name or self.logical_id


@dataclass
class Template:
    """A loaded template. ``data`` is the whole parsed document (long-form intrinsics)."""

    path: str
    base_dir: str
    data: dict[str, Any]
    parameters: dict[str, Any]
    functions: dict[str, Function]
    routes: list[Route]
    apis: dict[str, HttpApi]
    schedules: list[ScheduleEvent]
    sqs_events: list[SqsEvent]
    queues: dict[str, Queue]

    @property
    def resources(self) -> dict[str, Any]:
        return self.data.get("Resources") or {}

    def table_definition(self, logical_id: str = "Table") -> dict[str, Any]:
        """CreateTable arguments of a table: its attributes, key schema and indexes as the
        template declares them, without what only a deployment uses (warm throughput)."""
        props = self.resources[logical_id]["Properties"]
        indexes = [
            {k: v for k, v in index.items() if k != "WarmThroughput"} for index in props.get("GlobalSecondaryIndexes") or []
        ]
        return {
            "AttributeDefinitions": props["AttributeDefinitions"], "KeySchema": props["KeySchema"],
            **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }

    @property
    def api(self) -> HttpApi | None:
        """The first HttpApi (the one most templates have)."""
        return next(iter(self.apis.values()), None)

    @property
    def authorizers(self) -> dict[str, Authorizer]:
        """Authorizers of all HttpApis by name."""
        out: dict[str, Authorizer] = {}
        for api in self.apis.values():
            out.update(api.authorizers)
        return out

    @property
    def cors(self) -> Cors | None:
        """CORS configuration of the first HttpApi that has one."""
        return next((a.cors for a in self.apis.values() if a.cors), None)


# ----------------------------------------------------------------- loading


def _is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and (
        next(iter(value)) in ("Ref", "Condition") or next(iter(value)).startswith("Fn::")
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _ref_name(value: Any) -> str | None:
    """Logical id behind ``!Ref X``, ``!GetAtt X.Arn`` or ``"X"``; else None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return target[0] if isinstance(target, list) else str(target).split(".")[0]
        return None
    return value if isinstance(value, str) else None


def _number(value: Any, default: int, context: dict[str, Any]) -> int:
    if value is None:
        return default
    try:
        return int(resolve(value, context))
    except (Unresolved, TypeError, ValueError):
        return default


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def load_template(path: str | os.PathLike[str]) -> Template:
    """Load a SAM template and collect what the local stack needs. Paths become absolute."""
    path = Path(path).resolve()
    data = load_yaml(path.read_text()) or {}
    base = path.parent
    resources: dict[str, Any] = data.get("Resources") or {}
    globals_fn: dict[str, Any] = (data.get("Globals") or {}).get("Function") or {}
    globals_api: dict[str, Any] = (data.get("Globals") or {}).get("HttpApi") or {}
    parameters = {name: (spec or {}).get("Default") for name, spec in (data.get("Parameters") or {}).items()}
    template = Template(str(path), str(base), data, parameters, {}, [], {}, [], [], {})
    context = build_context(template)

    def layer_dir(ref: Any) -> str | None:
        name = _ref_name(ref)
        res = resources.get(name) if name else None
        if not res:
            return None  # a literal layer ARN: nothing local to add
        props = res.get("Properties") or {}
        uri = props.get("ContentUri") or props.get("Content")
        if not isinstance(uri, str):
            return None
        return str((base / uri / "python").resolve())

    # -- HttpApis (explicit ones, plus the implicit one used by events without ApiId)
    def make_api(logical_id: str, props: dict[str, Any]) -> HttpApi:
        props = {**globals_api, **props}
        auth = props.get("Auth") or {}
        authorizers = {}
        for name, spec in (auth.get("Authorizers") or {}).items():
            jwt_cfg = spec.get("JwtConfiguration") or {}
            authorizers[name] = Authorizer(
                name=name,
                identity_source=spec.get("IdentitySource", "$request.header.Authorization"),
                issuer=jwt_cfg.get("issuer"),
                audience=_as_list(jwt_cfg.get("audience")),
            )
        cors_cfg = props.get("CorsConfiguration")
        cors = None
        if cors_cfg is True:
            cors = Cors(["*"], ["*"], ["*"], [], None, False)
        elif isinstance(cors_cfg, dict):
            cors = Cors(
                allow_origins=_as_list(cors_cfg.get("AllowOrigins")),
                allow_methods=[str(m).upper() for m in _as_list(cors_cfg.get("AllowMethods"))],
                allow_headers=[str(h) for h in _as_list(cors_cfg.get("AllowHeaders"))],
                expose_headers=[str(h) for h in _as_list(cors_cfg.get("ExposeHeaders"))],
                max_age=_number(cors_cfg.get("MaxAge"), 0, context) if cors_cfg.get("MaxAge") is not None else None,
                allow_credentials=_truthy(cors_cfg.get("AllowCredentials", False)),
            )
        return HttpApi(logical_id, authorizers, auth.get("DefaultAuthorizer"), cors)

    for logical_id, res in resources.items():
        if (res or {}).get("Type") == "AWS::Serverless::HttpApi":
            template.apis[logical_id] = make_api(logical_id, res.get("Properties") or {})

    for logical_id, res in resources.items():
        res = res or {}
        rtype = res.get("Type")
        props = res.get("Properties") or {}
        if rtype == "AWS::SQS::Queue":
            qname = props.get("QueueName")
            template.queues[logical_id] = Queue(logical_id, qname if isinstance(qname, str) else None, props)
            continue
        if rtype != "AWS::Serverless::Function":
            continue
        merged = {**globals_fn, **props}
        handler = str(merged.get("Handler") or "app.lambda_handler")
        module, _, func = handler.rpartition(".")
        env = dict(((globals_fn.get("Environment") or {}).get("Variables")) or {})
        env.update(((props.get("Environment") or {}).get("Variables")) or {})
        layers = [d for d in (layer_dir(x) for x in _as_list(globals_fn.get("Layers")) + _as_list(props.get("Layers"))) if d]
        code_uri = merged.get("CodeUri") or "."
        if not isinstance(code_uri, str):
            code_uri = "."
        template.functions[logical_id] = Function(
            logical_id=logical_id,
            code_uri=str((base / code_uri).resolve()),
            handler=handler,
            module=module.replace("/", "."),
            function=func,
            runtime=merged.get("Runtime"),
            timeout=_number(merged.get("Timeout"), DEFAULT_TIMEOUT, context),
            memory=_number(merged.get("MemorySize"), DEFAULT_MEMORY, context),
            environment=env,
            layers=layers,
            properties=props,
        )
        for event_name, event in (props.get("Events") or {}).items():
            etype = (event or {}).get("Type")
            eprops = (event or {}).get("Properties") or {}
            if etype == "HttpApi":
                api_id = _ref_name(eprops.get("ApiId")) or IMPLICIT_HTTP_API
                if api_id not in template.apis:
                    template.apis[api_id] = make_api(api_id, {})
                api = template.apis[api_id]
                method = str(eprops.get("Method") or "ANY").upper()
                path_ = eprops.get("Path") or "$default"
                if path_ == "$default" or method == "$DEFAULT":
                    path_, method = "$default", "ANY"
                auth = eprops.get("Auth") or {}
                authorizer = auth.get("Authorizer", api.default_authorizer)
                if authorizer == "NONE":
                    authorizer = None
                template.routes.append(Route(method, path_, logical_id, authorizer, api_id, event_name))
            elif etype in ("Schedule", "ScheduleV2"):
                expression = eprops.get("Schedule") or eprops.get("ScheduleExpression")
                enabled = eprops.get("Enabled", True) is not False and str(eprops.get("State", "ENABLED")).upper() != "DISABLED"
                template.schedules.append(ScheduleEvent(logical_id, event_name, expression, enabled))
            elif etype == "SQS":
                queue = _ref_name(eprops.get("Queue")) or ""
                if queue.startswith("arn:"):
                    queue = queue.rsplit(":", 1)[-1]
                template.sqs_events.append(
                    SqsEvent(
                        function=logical_id,
                        name=event_name,
                        queue=queue,
                        batch_size=_number(eprops.get("BatchSize"), 10, context),
                        report_batch_item_failures="ReportBatchItemFailures" in _as_list(eprops.get("FunctionResponseTypes")),
                        enabled=eprops.get("Enabled", True) is not False,
                    )
                )
    return template


# ---------------------------------------------------------------- resolving


class Unresolved(LookupError):
    """An intrinsic referred to something the context does not know."""


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


def _name_property(rtype: str) -> str | None:
    return {
        "AWS::SQS::Queue": "QueueName",
        "AWS::DynamoDB::Table": "TableName",
        "AWS::S3::Bucket": "BucketName",
        "AWS::Serverless::Function": "FunctionName",
        "AWS::Lambda::Function": "FunctionName",
        "AWS::SecretsManager::Secret": "Name",
        "AWS::SNS::Topic": "TopicName",
    }.get(rtype)


def build_context(
    template: Template,
    parameters: Mapping[str, Any] | None = None,
    physical_names: Mapping[str, str] | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> dict[str, Any]:
    """Values for ``resolve``: parameters, pseudo parameters, resources and conditions.

    * Parameters: template defaults, overridden by ``parameters``.
    * ``Ref Resource`` gives its local physical name: ``physical_names[id]`` if
      given, else the resource's literal (or resolvable) name property
      (TableName, BucketName, secret Name, ...), else the logical id. Queues
      use only a *literal* QueueName, else the logical id (``Queue.local_name``).
      Exceptions, to match what code does with them: a queue's Ref is its URL
      (``endpoint_url``/ACCOUNT/name), a secret's Ref is its *name* (so
      ``GetSecretValue(SecretId=...)`` works against a local endpoint).
    * ``"X.Arn"``, ``"X.QueueUrl"``, ``"X.QueueName"`` ... keys for ``GetAtt``.
    * ``context["Conditions"]`` maps condition names to booleans.
    """
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    ctx: dict[str, Any] = {
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::Partition": "aws",
        "AWS::StackName": "local",
        "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/local/00000000-0000-0000-0000-000000000000",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NotificationARNs": [],
    }
    specs = template.data.get("Parameters") or {}
    values = dict(template.parameters)
    values.update(parameters or {})
    for name, value in values.items():
        ptype = str((specs.get(name) or {}).get("Type", "String"))
        if isinstance(value, str) and (ptype == "CommaDelimitedList" or ptype.startswith("List<")):
            value = [v.strip() for v in value.split(",")]
        ctx[name] = value
    ctx["Mappings"] = template.data.get("Mappings") or {}

    conditions_raw = template.data.get("Conditions") or {}
    conditions: dict[str, bool] = {}
    ctx["Conditions"] = conditions

    def evaluate(name: str, seen: tuple[str, ...] = ()) -> None:
        if name in conditions or name in seen or name not in conditions_raw:
            return
        for dep in _condition_deps(conditions_raw[name]):
            evaluate(dep, seen + (name,))
        try:
            conditions[name] = bool(resolve(conditions_raw[name], ctx))
        except Unresolved:
            pass

    for cond in conditions_raw:
        evaluate(cond)

    physical_names = dict(physical_names or {})
    base_url = (endpoint_url or f"https://sqs.{region}.amazonaws.com").rstrip("/")
    for lid, res in (template.data.get("Resources") or {}).items():
        res = res or {}
        rtype = str(res.get("Type", ""))
        props = res.get("Properties") or {}
        name = physical_names.get(lid)
        if name is None and rtype == "AWS::SQS::Queue":
            literal = props.get("QueueName")
            name = literal if isinstance(literal, str) else lid  # same rule as Queue.local_name
        if name is None:
            prop = _name_property(rtype)
            raw = props.get(prop) if prop else None
            try:
                name = str(resolve(raw, ctx)) if raw is not None else lid
            except Unresolved:
                name = lid
        ref: Any = name
        arn = f"arn:aws:local:{region}:{ACCOUNT_ID}:{lid}/{name}"
        if rtype == "AWS::SQS::Queue":
            ref = f"{base_url}/{ACCOUNT_ID}/{name}"
            arn = f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{name}"
            ctx[f"{lid}.QueueName"] = name
            ctx[f"{lid}.QueueUrl"] = ref
        elif rtype == "AWS::DynamoDB::Table":
            arn = f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{name}"
            ctx[f"{lid}.StreamArn"] = f"{arn}/stream/1970-01-01T00:00:00.000"
        elif rtype == "AWS::S3::Bucket":
            arn = f"arn:aws:s3:::{name}"
            ctx[f"{lid}.DomainName"] = f"{name}.s3.amazonaws.com"
        elif rtype in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"
        elif rtype == "AWS::SecretsManager::Secret":
            arn = f"arn:aws:secretsmanager:{region}:{ACCOUNT_ID}:secret:{name}"
        elif rtype == "AWS::Cognito::UserPool":
            arn = f"arn:aws:cognito-idp:{region}:{ACCOUNT_ID}:userpool/{name}"
        elif rtype == "AWS::SNS::Topic":
            arn = f"arn:aws:sns:{region}:{ACCOUNT_ID}:{name}"
            ref = arn
        ctx[lid] = ref
        ctx[f"{lid}.Arn"] = arn
    # Resource names may have depended on conditions evaluated above; conditions
    # may not depend on resources, so one pass each is enough.
    return ctx


def _condition_deps(value: Any) -> list[str]:
    deps: list[str] = []
    if isinstance(value, dict):
        if "Condition" in value and isinstance(value["Condition"], str):
            deps.append(value["Condition"])
        for v in value.values():
            deps.extend(_condition_deps(v))
    elif isinstance(value, list):
        for v in value:
            deps.extend(_condition_deps(v))
    return deps


_SUB_RE = re.compile(r"\$\{([^}]*)\}")


def _lookup_ref(name: str, context: Mapping[str, Any]) -> Any:
    if name == "AWS::NoValue":
        return NO_VALUE
    if name in context:
        return context[name]
    if name == "AWS::Region":
        return DEFAULT_REGION
    if name == "AWS::AccountId":
        return ACCOUNT_ID
    raise Unresolved(name)


def _get_att(resource: str, attribute: str, context: Mapping[str, Any]) -> Any:
    key = f"{resource}.{attribute}"
    if key in context:
        return context[key]
    if attribute == "Arn":
        region = context.get("AWS::Region", DEFAULT_REGION)
        return f"arn:aws:local:{region}:{ACCOUNT_ID}:{resource}/{context.get(resource, resource)}"
    raise Unresolved(key)


def _condition(name: str, context: Mapping[str, Any]) -> bool:
    conditions = context.get("Conditions") or {}
    if name not in conditions:
        raise Unresolved(f"Condition {name}")
    return bool(conditions[name])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def resolve(value: Any, context: Mapping[str, Any]) -> Any:
    """Resolve CloudFormation intrinsics in ``value`` against ``context``.

    ``context`` maps parameter names, pseudo parameters (``AWS::Region``) and
    resource logical ids to values, ``"Logical.Attr"`` keys to ``GetAtt``
    values, ``"Conditions"`` to ``{name: bool}`` and ``"Mappings"`` to the
    template's Mappings (see ``build_context``). Supported: Ref, Fn::Sub,
    Fn::GetAtt (``X.Arn`` falls back to a fake local ARN), Fn::Join,
    Fn::Select, Fn::Split, Fn::If, Fn::Equals, Fn::And, Fn::Or, Fn::Not,
    Condition, Fn::FindInMap, Fn::Base64, Fn::GetAZs, Fn::ToJsonString,
    Fn::Length; ``AWS::NoValue`` removes the item. Raises ``Unresolved``.
    """
    if isinstance(value, list):
        items = [resolve(v, context) for v in value]
        return [v for v in items if v is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if not _is_intrinsic(value):
        items = {k: resolve(v, context) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not NO_VALUE}

    (fn, arg), = value.items()
    if fn == "Ref":
        return _lookup_ref(arg, context)
    if fn == "Condition":
        return _condition(arg, context)
    if fn == "Fn::GetAtt":
        if isinstance(arg, str):
            resource, _, attribute = arg.partition(".")
        else:
            resource, attribute = arg[0], ".".join(str(a) for a in arg[1:])
        return _get_att(resource, resolve(attribute, context), context)
    if fn == "Fn::Sub":
        if isinstance(arg, list):
            text, variables = arg[0], resolve(arg[1] if len(arg) > 1 else {}, context)
        else:
            text, variables = arg, {}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _text(variables[name])
            if "." in name and not name.startswith("AWS::"):
                resource, _, attribute = name.partition(".")
                return _text(_get_att(resource, attribute, context))
            return _text(_lookup_ref(name, context))

        return _SUB_RE.sub(substitute, str(text))
    if fn == "Fn::Join":
        delimiter, items = arg
        return str(delimiter).join(_text(v) for v in resolve(items, context))
    if fn == "Fn::Select":
        index, items = arg
        return resolve(items, context)[int(resolve(index, context))]
    if fn == "Fn::Split":
        delimiter, text = arg
        return str(resolve(text, context)).split(delimiter)
    if fn == "Fn::If":
        name, if_true, if_false = arg
        return resolve(if_true if _condition(name, context) else if_false, context)
    if fn == "Fn::Equals":
        left, right = (resolve(v, context) for v in arg)
        return _text(left) == _text(right)
    if fn == "Fn::And":
        return all(bool(resolve(v, context)) for v in arg)
    if fn == "Fn::Or":
        return any(bool(resolve(v, context)) for v in arg)
    if fn == "Fn::Not":
        return not bool(resolve(arg[0] if isinstance(arg, list) else arg, context))
    if fn == "Fn::FindInMap":
        name, top, second = (resolve(v, context) for v in arg[:3])
        try:
            return context.get("Mappings", {})[name][top][second]
        except (KeyError, TypeError):
            raise Unresolved(f"FindInMap {name}.{top}.{second}") from None
    if fn == "Fn::Base64":
        return base64.b64encode(_text(resolve(arg, context)).encode()).decode()
    if fn == "Fn::GetAZs":
        region = resolve(arg, context) or context.get("AWS::Region", DEFAULT_REGION)
        return [f"{region}{z}" for z in "abc"]
    if fn == "Fn::ToJsonString":
        return json.dumps(resolve(arg, context), separators=(",", ":"))
    if fn == "Fn::Length":
        return len(resolve(arg, context))
    raise Unresolved(fn)


def resolve_environment(
    variables: Mapping[str, Any],
    context: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Resolve environment ``variables`` to strings.

    A name present in ``overrides`` takes that value instead (as ``sam local
    --env-vars`` does; names not declared in ``variables`` are ignored).
    Values that cannot be resolved are dropped. Booleans become
    ``"true"``/``"false"``; ``None`` drops the variable.
    """
    out: dict[str, str] = {}
    overrides = overrides or {}
    for name, raw in variables.items():
        value = overrides[name] if name in overrides else raw
        try:
            value = resolve(value, context)
        except (Unresolved, TypeError, ValueError, IndexError):
            continue
        if value is None or value is NO_VALUE:
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        out[name] = _text(value)
    return out
