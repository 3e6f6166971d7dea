"""Sub-action params of the AI connectors (.gen-ai, .bedrock, .gemini, .inference), in
`subaction_schemas`' language.

Transcribed from elastic/kibana main, src/platform/packages/shared/kbn-connector-schemas/<type>/schemas/
v1.ts (openai, bedrock, gemini, inference), each sub action with the schema its connector registers
(x-pack/platform/plugins/shared/stack_connectors/server/connector_types/{openai/openai.ts,
bedrock/bedrock.ts, gemini/gemini.ts, inference/inference.ts} `registerSubActions`). 8.x's
config-schema versions (common/<type>/schema.ts) have the same fields less the later `telemetryMetadata`
and coercions; one table serves both lines. `z.any()` fields (`signal`, Converse's messages) take anything,
and `z.coerce.number()` is `Num(coerce=True)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.sandbox.subaction_schemas import (
    AnyValue,
    Arr,
    Bool,
    Enum,
    F,
    Lit,
    Num,
    Obj,
    OneOf,
    Rec,
    Refine,
    Spec,
    Str,
    opt,
)

_CNUM = Num(coerce=True)
_PASS = Obj(unknowns="allow")  # z.object({}).passthrough()
_STRS = Arr(Str())


def _telemetry(*extra: str) -> Obj:
    """TelemetryMetadataSchema (openai adds `useCase`)."""
    return Obj(tuple(opt(k, Str()) for k in ("pluginId", "aggregateBy", *extra)), strict=True)


def _signal(telemetry: Obj) -> tuple[F, ...]:
    """The Kibana-side fields every AI params schema ends with: abort signal, timeout, telemetry."""
    return opt("signal", AnyValue()), opt("timeout", _CNUM), opt("telemetryMetadata", telemetry)


_DASHBOARD = Obj((F("dashboardId", Str()),), strict=True)  # DashboardActionParamsSchema (all four)
_STOP = opt("stop", OneOf((Str(), _STRS)), nullable=True)  # z.union([string, string[]]).nullish()

# ---- openai/schemas/v1.ts ----
_OPENAI_TELEMETRY = _telemetry("useCase")
_OPENAI_RUN = Obj((F("body", Str()), *_signal(_OPENAI_TELEMETRY)), strict=True)  # RunActionParamsSchema
_OPENAI_STREAM = Obj((F("body", Str()), opt("stream", Bool()), *_signal(_OPENAI_TELEMETRY)),
                     strict=True)  # StreamActionParamsSchema (`stream` defaults to false)
_FN_CALL = Obj((F("arguments", Str()), F("name", Str())), strict=True)
_OPENAI_MESSAGE = Obj((
    F("role", Str()), F("content", Str()), opt("name", Str()), opt("function_call", _FN_CALL),
    opt("tool_calls", Arr(Obj((F("id", Str()), F("function", _FN_CALL), F("type", Str())), strict=True))),
    opt("tool_call_id", Str())), strict=True)
_OPENAI_INVOKE = Obj((  # InvokeAIActionParamsSchema: invokeAI, invokeStream, invokeAsyncIterator
    F("messages", Arr(_OPENAI_MESSAGE)), opt("model", Str()),
    opt("tools", Arr(Obj((F("type", Lit("function")), F("function", Obj((
        opt("description", Str()), F("name", Str()), F("parameters", _PASS), opt("strict", Bool())),
        unknowns="allow"))), unknowns="allow"))),
    opt("tool_choice", OneOf((Lit("none"), Lit("auto"), Lit("required"), Obj((
        F("type", Lit("function")), F("function", Obj((F("name", Str()),), unknowns="allow"))))))),
    opt("functions", Arr(Obj((F("name", Str()), F("description", Str()), F("parameters", Obj((
        F("type", Str()), F("properties", _PASS), F("additionalProperties", Bool()), F("$schema", Str())),
        unknowns="allow"))), unknowns="allow"))),
    opt("function_call", OneOf((Lit("none"), Lit("auto"), Obj((F("name", Str()),))))),
    opt("n", _CNUM), _STOP, opt("temperature", _CNUM), opt("response_format", AnyValue()),
    *_signal(_OPENAI_TELEMETRY)), strict=True)

# ---- bedrock/schemas/v1.ts ----
_BEDROCK_TELEMETRY = _telemetry()


def _content_xor_raw(message: Any) -> str | None:
    """BedrockMessageSchema's superRefine: exactly one of `content` and `rawContent`."""
    has_content, has_raw = "content" in message, "rawContent" in message
    if not has_content and not has_raw:
        return "Must specify either content or rawContent"
    if has_content and has_raw:
        return "content and rawContent can not be used at the same time"
    return None


_BEDROCK_MESSAGE = Refine(Obj((F("role", Str()), opt("content", Str()), opt("rawContent", Arr(AnyValue()))),
                              strict=True), _content_xor_raw)
_BEDROCK_TOOLS = opt("tools", Arr(Obj((F("name", Str()), F("description", Str()), F("input_schema", _PASS)),
                                      strict=True)))
_BEDROCK_TOOL_CHOICE = opt("toolChoice", Obj((F("type", Enum(("auto", "any", "tool"))), opt("name", Str())),
                                             strict=True))
_BEDROCK_RUN = Obj((F("body", Str()), opt("model", Str()), opt("signal", AnyValue()), opt("timeout", _CNUM),
                    opt("raw", Bool()), opt("telemetryMetadata", _BEDROCK_TELEMETRY)), strict=True)


def _bedrock_invoke(message: Any) -> Obj:
    """InvokeAIActionParamsSchema (invokeAI, invokeStream) and InvokeAIRawActionParamsSchema differ only
    in their message schema."""
    return Obj((
        F("messages", Arr(message)), opt("model", Str()), opt("temperature", _CNUM), opt("stopSequences", _STRS),
        opt("system", Str()), opt("maxTokens", _CNUM), opt("signal", AnyValue()), opt("timeout", _CNUM),
        opt("anthropicVersion", Str()), _BEDROCK_TOOLS, _BEDROCK_TOOL_CHOICE,
        opt("telemetryMetadata", _BEDROCK_TELEMETRY)), strict=True)


_BEDROCK_CONVERSE = Obj((  # ConverseActionParamsSchema = ConverseStreamActionParamsSchema (passthrough)
    F("messages", Arr(AnyValue())), opt("model", Str()), opt("system", Arr(AnyValue())),
    opt("temperature", _CNUM), opt("maxTokens", _CNUM), opt("stopSequences", _STRS), opt("tools", Arr(AnyValue())),
    opt("toolChoice", AnyValue()), opt("signal", AnyValue()), opt("timeout", _CNUM),
    opt("maxContentLength", _CNUM), opt("telemetryMetadata", _BEDROCK_TELEMETRY),
    opt("connectorUsageCollector", AnyValue())), unknowns="allow")
# BedrockClientSendParamsSchema: `command` is z.any() (a ConverseCommand object from the AWS SDK).
_BEDROCK_CLIENT_SEND = Obj((F("command", AnyValue()), opt("signal", AnyValue()),
                            opt("telemetryMetadata", _BEDROCK_TELEMETRY)), strict=True)

# ---- gemini/schemas/v1.ts ----
_GEMINI_TELEMETRY = _telemetry()
_GEMINI_RUN = Obj((  # RunActionParamsSchema: `body` is z.any() in main
    F("body", AnyValue()), opt("model", Str()), opt("signal", AnyValue()), opt("timeout", _CNUM),
    opt("temperature", _CNUM), opt("stopSequences", _STRS), opt("raw", Bool()),
    opt("telemetryMetadata", _GEMINI_TELEMETRY)), strict=True)
_GEMINI_INVOKE = Obj((  # InvokeAIActionParamsSchema = InvokeAIRawActionParamsSchema
    opt("maxOutputTokens", _CNUM), F("messages", AnyValue()), opt("systemInstruction", Str()), opt("model", Str()),
    opt("temperature", _CNUM), opt("stopSequences", _STRS), opt("signal", AnyValue()), opt("timeout", _CNUM),
    opt("tools", Arr(AnyValue())),
    opt("toolConfig", Obj((F("mode", Enum(("AUTO", "ANY", "NONE"))), opt("allowedFunctionNames", _STRS)),
                          strict=True)),
    opt("telemetryMetadata", _GEMINI_TELEMETRY)), strict=True)

# ---- inference/schemas/v1.ts ----
_INFERENCE_TELEMETRY = _telemetry()
_INF_FN = Obj((opt("arguments", Str()), opt("name", Str())), strict=True)
_INF_MESSAGE = Obj((  # AIMessage
    F("role", Str()), opt("content", Str(), nullable=True), opt("name", Str()),
    opt("tool_calls", Arr(Obj((F("id", Str()), F("function", _INF_FN), F("type", Str())), strict=True))),
    opt("tool_call_id", Str())), strict=True)
_INF_TOOL = Obj((F("type", Str()), F("function", Obj((
    F("name", Str()), opt("description", Str()), opt("parameters", Rec(AnyValue()))), strict=True))), strict=True)
_INF_UNIFIED = Obj((  # UnifiedChatCompleteParamsSchema: unified_completion, _stream, _async_iterator
    F("body", Obj((
        opt("messages", Arr(_INF_MESSAGE)), opt("model", Str()), opt("max_tokens", _CNUM),
        opt("metadata", Rec(Str())), opt("n", _CNUM), _STOP, opt("temperature", _CNUM),
        opt("tool_choice", OneOf((Str(), Obj((F("type", Str()), F("function", Obj((F("name", Str()),),
                                                                                  strict=True))), strict=True)))),
        opt("tools", Arr(_INF_TOOL)), opt("top_p", _CNUM), opt("user", Str())), strict=True)),
    opt("signal", AnyValue()), opt("telemetryMetadata", _INFERENCE_TELEMETRY)), strict=True)
_INF_INPUT = Obj((F("input", Str()),), strict=True)  # ChatCompleteParamsSchema, SparseEmbeddingParamsSchema

AI: Mapping[str, Spec] = {
    # openai/constants.ts SUB_ACTION, as openai.ts registers them.
    ".gen-ai": Spec({"run": _OPENAI_RUN, "test": _OPENAI_RUN, "stream": _OPENAI_STREAM, "getDashboard": _DASHBOARD,
                     "invokeAI": _OPENAI_INVOKE, "invokeStream": _OPENAI_INVOKE,
                     "invokeAsyncIterator": _OPENAI_INVOKE}),
    # bedrock/constants.ts SUB_ACTION, as bedrock.ts registers them.
    ".bedrock": Spec({"run": _BEDROCK_RUN, "test": _BEDROCK_RUN, "getDashboard": _DASHBOARD,
                      "invokeAI": _bedrock_invoke(_BEDROCK_MESSAGE), "invokeStream": _bedrock_invoke(_BEDROCK_MESSAGE),
                      "invokeAIRaw": _bedrock_invoke(Obj((F("role", Str()), F("content", AnyValue())), strict=True)),
                      "bedrockClientSend": _BEDROCK_CLIENT_SEND, "converse": _BEDROCK_CONVERSE,
                      "converseStream": _BEDROCK_CONVERSE}),
    # gemini/constants.ts SUB_ACTION, as gemini.ts registers them.
    ".gemini": Spec({"run": _GEMINI_RUN, "test": _GEMINI_RUN, "getDashboard": _DASHBOARD, "invokeAI": _GEMINI_INVOKE,
                     "invokeAIRaw": _GEMINI_INVOKE, "invokeStream": _GEMINI_INVOKE}),
    # inference.ts registerSubActions: `completion_stream` is in constants.ts' SUB_ACTION but main no longer
    # registers it, and `getDashboard` is a method without a registration, so both answer "not registered".
    ".inference": Spec({"unified_completion": _INF_UNIFIED, "unified_completion_stream": _INF_UNIFIED,
                        "unified_completion_async_iterator": _INF_UNIFIED,
                        "rerank": Obj((opt("input", _STRS), F("query", Str())), strict=True),
                        "sparse_embedding": _INF_INPUT,
                        "text_embedding": Obj((F("input", Str()), F("inputType", Str())), strict=True),
                        "completion": _INF_INPUT}),
}
