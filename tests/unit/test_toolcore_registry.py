"""The registry: the shipped file loads, and every kind of mistake is refused at load naming tool and field."""

from __future__ import annotations

import pytest

from tests.fixtures.toolcore import TEST_PACKAGE, registry, tool
from toolcore.registry import DEFAULT_CONFIG, RegistryError, load_registry

SHIPPED = {"projects.list", "task.create", "followup.create"}


def test_shipped_registry_loads_with_targets_from_configuration():
    env = {"PROJECTS_API_URL": "https://projects.example.org/api", "FOLLOWUPS_API_URL": "https://f.example.org"}
    reg = load_registry(DEFAULT_CONFIG, environ=env)
    assert set(reg.tools) >= SHIPPED
    assert reg.tools["projects.list"].target == "https://projects.example.org/api/projects/list"
    assert reg.tools["task.create"].target == "https://projects.example.org/api/tasks/create"
    assert reg.tools["followup.create"].target == "https://f.example.org/followups/create"
    assert all(reg.tools[t].enabled for t in SHIPPED)
    # the original specification's fields are all there
    for t in SHIPPED:
        c = reg.tools[t].config
        assert c.executor == "http" and c.timeout > 0 and c.output_schema
    # only the read-only, idempotent tool is retried
    assert reg.tools["projects.list"].config.hints.idempotent and reg.tools["projects.list"].config.retries > 0
    assert not reg.tools["task.create"].config.hints.idempotent and reg.tools["task.create"].config.retries == 0


def test_shipped_registry_is_least_privilege_by_default():
    """Write tools and tenant-data reads name their agents, in the id form agent-runtime sends."""
    reg = load_registry(DEFAULT_CONFIG, environ={})
    agents = {t: reg.tools[t].config.allowed_agents for t in SHIPPED}
    assert agents == {
        "projects.list": ["agent:sofia", "agent:pm", "agent:cto"],
        "task.create": ["agent:sofia", "agent:pm"],
        "followup.create": ["agent:sofia", "agent:pm"],
    }
    for t in reg.tools.values():  # nothing that writes or reads a tenant's data is open to every agent
        c = t.config
        if c.allowed_agents is None:
            assert c.hints.read_only and not c.hints.destructive and not (c.tenant_arg or c.channel_arg), t.id
        assert not c.allow_all_agents, t.id
    assert reg.tools["projects.list"].config.tenant_arg == "microdao_id"
    assert reg.tools["task.create"].config.tenant_arg == "microdao_id"
    assert reg.tools["followup.create"].config.channel_arg == "channel_id"
    assert not reg.tools["task.create"].allows("agent:intruder", "microdao:7")
    assert not reg.tools["task.create"].allows("sofia", "microdao:7")  # opaque ids: not agent:sofia
    assert reg.tools["task.create"].allows("agent:sofia", "microdao:7")


def _shipped_data() -> dict:
    import yaml

    return yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))


@pytest.mark.parametrize("tool_id", ["task.create", "followup.create", "projects.list"])
def test_the_shipped_registry_with_an_open_write_or_tenant_tool_is_refused_naming_it(tool_id):
    data = _shipped_data()
    next(t for t in data["tools"] if t["id"] == tool_id)["allowed_agents"] = None
    with pytest.raises(RegistryError) as info:
        load_registry(data=data, environ={})
    assert info.value.problems == [info.value.problems[0]] and f"tool '{tool_id}'" in info.value.problems[0]
    assert "field 'allowed_agents'" in info.value.problems[0] and "allow_all_agents: true" in str(info.value)


@pytest.mark.parametrize(
    ("hints", "words"),
    [
        ({"read_only": False, "destructive": True, "idempotent": False}, "is destructive"),
        ({"read_only": True, "destructive": True, "idempotent": True}, "is destructive"),
        ({"read_only": False, "destructive": False, "idempotent": True}, "is not read_only"),
        (None, "is destructive"),  # no hints: MCP's default, assume destructive
    ],
)
def test_an_open_destructive_or_writing_tool_is_refused_at_load_naming_the_tool(hints, words):
    entry = tool("files.delete", allowed_agents=None, allow_all_agents=False)
    if hints is not None:
        entry["hints"] = hints
    problems = problems_of(entry)
    assert problems == [
        f"tool 'files.delete': field 'allowed_agents': null lets every agent call a tool that {words} (hints); "
        "list the agents that may call it, or say allow_all_agents: true"
    ]


def test_an_open_tool_is_loaded_when_it_says_so_or_is_a_harmless_read():
    reg = registry(
        tool("files.delete", allowed_agents=None, allow_all_agents=True),
        tool("clock.read", allowed_agents=None, allow_all_agents=False,
             hints={"read_only": True, "destructive": False, "idempotent": True}),
        tool("files.named", allowed_agents=["agent:sofia"], allow_all_agents=False),
    )  # fmt: skip
    assert reg.tools["files.delete"].allows("agent:anyone", "microdao:1")
    assert reg.tools["clock.read"].allows("agent:anyone", "microdao:1")
    assert not reg.tools["files.named"].allows("agent:anyone", "microdao:1")


TENANT_SCHEMA = {
    "type": "object",
    "properties": {"microdao_id": {"type": "string"}, "channel_id": {"type": "string"}},
    "required": ["microdao_id", "channel_id"],
}
READ = {"read_only": True, "destructive": False, "idempotent": True}


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        (tool("t.both", allowed_agents=["agent:sofia"], allow_all_agents=True), "allow_all_agents", "contradicts"),
        (tool("t.read", allowed_agents=None, allow_all_agents=False, hints=READ, input_schema=TENANT_SCHEMA,
              tenant_arg="microdao_id", channel_arg="channel_id"), "allowed_agents", "read a tenant's data"),
        (tool("t.chan", allowed_agents=["a"], input_schema=TENANT_SCHEMA, tenant_arg="microdao_id"),
         "channel_arg", "argument 'channel_id' names a tenant's resource"),
        (tool("t.dao", allowed_agents=["a"], input_schema=TENANT_SCHEMA, channel_arg="channel_id"),
         "tenant_arg", "argument 'microdao_id' names a tenant's resource"),
        (tool("t.opt", allowed_agents=["a"], input_schema={**TENANT_SCHEMA, "required": ["microdao_id"]},
              tenant_arg="microdao_id", channel_arg="channel_id"), "channel_arg", "required property"),
        (tool("t.why", allowed_agents=["a"], input_schema=TENANT_SCHEMA, tenant_arg="microdao_id",
              target_checks={"channel_id": " "}), "target_checks", "with a reason"),
    ],
)  # fmt: skip
def test_tenant_arguments_must_be_checked_and_privileges_consistent(entry, field, words):
    problems = problems_of(entry)
    assert any(f"tool '{entry['id']}'" in p and f"field '{field}'" in p and words in p for p in problems), problems


def test_a_tenant_argument_the_target_checks_is_accepted_with_its_reason():
    reg = registry(tool("t.why", allowed_agents=["a"], input_schema=TENANT_SCHEMA, tenant_arg="microdao_id",
                        target_checks={"channel_id": "the chat service checks membership"}))  # fmt: skip
    assert reg.tools["t.why"].config.target_checks == {"channel_id": "the chat service checks membership"}


def test_shipped_tools_without_a_configured_target_are_disabled_not_pointed_anywhere():
    reg = load_registry(DEFAULT_CONFIG, environ={})
    for t in SHIPPED:
        assert not reg.tools[t].enabled
        assert "unset" in reg.tools[t].disabled_reason
        assert reg.tools[t].target.startswith("/")  # no host at all: nothing to call


def problems_of(*tools: dict, secrets: dict | None = None) -> list[str]:
    with pytest.raises(RegistryError) as info:
        registry(*tools, secrets=secrets)
    return info.value.problems


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        (tool("t.bad-schema", input_schema={"type": "object", "properties": {"n": {"type": "integr"}}}),
         "input_schema", "not a valid JSON Schema"),
        (tool("t.bad-out", output_schema={"type": "object", "required": "n"}),
         "output_schema", "not a valid JSON Schema"),
        (tool("t.not-object", input_schema={"type": "array"}), "input_schema", "object"),
        (tool("t.exec", executor="shell"), "executor", "unknown executor 'shell'"),
        (tool("t.secret", executor="http", target="https://x.example/a", secrets=["nope"]),
         "secrets", "unknown secret"),
        (tool("t.retry", retries=3), "retries", "idempotent"),
        (tool("t.timeout", timeout=0), "timeout", "greater than 0"),
        (tool("t.slow", timeout=20, retries=2, hints={"idempotent": True}), "timeout", "exceeds"),
        (tool("t.url", executor="http", target="ftp://x.example/a"), "target", "http(s)"),
        (tool("t.creds", executor="http", target="https://u:p@x.example/a"), "target", "credentials"),
        (tool("t.outside", target="os:system"), "target", "built-in tools package"),
        (tool("t.not-fn", target=f"{TEST_PACKAGE}:Counter"), "target", "module:function"),
        (tool("t.imported", target=f"{TEST_PACKAGE}:load_event"), "target", "not a function defined in"),
        (tool("t.private", target=f"{TEST_PACKAGE}:_calls"), "target", "module:function"),
        (tool("t.typo", exectuor="http"), "exectuor", "Extra inputs are not permitted"),
        (tool("t.tenant", tenant_arg="microdao_id"), "tenant_arg", "required property"),
        (tool("Bad Id"), "id", "must match"),
        ({k: v for k, v in tool("t.agents").items() if k != "allowed_agents"}, "allowed_agents", "required"),
    ],
)  # fmt: skip
def test_invalid_entries_are_refused_naming_tool_and_field(entry, field, words):
    problems = problems_of(entry)
    assert any(f"tool '{entry['id']}'" in p and f"field '{field}'" in p and words in p for p in problems), problems


def test_duplicate_id_is_refused():
    problems = problems_of(tool("t.same"), tool("t.same"))
    assert problems == ["tool 't.same': field 'id': duplicate id"]


def test_all_problems_are_reported_at_once_and_nothing_loads():
    problems = problems_of(tool("t.ok"), tool("t.one", executor="bash"), tool("t.two", input_schema={"type": 5}))
    assert {p.split(":")[0] for p in problems} == {"tool 't.one'", "tool 't.two'"}


def test_python_targets_are_confined_to_the_builtin_package():
    from toolcore.registry import resolve_python_target

    assert resolve_python_target("toolcore.builtin.basic:utc_now").__name__ == "utc_now"
    for target in ("toolcore.app:handler", "os:system", "subprocess:run", "toolcore.builtin.basic:datetime",
                   "toolcore.builtinx.basic:utc_now", "toolcore.builtin.basic:utc_now; import os"):  # fmt: skip
        with pytest.raises(ValueError):
            resolve_python_target(target)


def test_secret_names_resolve_to_their_header_spec():
    reg = registry(
        tool("t.sec", executor="http", target="https://x.example/a", secrets=["api"]),
        secrets={"api": {"header": "Authorization", "prefix": "Bearer "}},
    )
    ((name, spec),) = reg.tools["t.sec"].secrets
    assert name == "api" and spec.header == "Authorization"
