"""Sub-action params of the security connectors (.sentinelone, .crowdstrike, .microsoft_defender_endpoint),
in `subaction_schemas`' language.

Transcribed from elastic/kibana main, src/platform/packages/shared/kbn-connector-schemas/{sentinelone,
crowdstrike,microsoft_defender_endpoint}/schemas/v1.ts, each sub action with the schema its connector
registers (x-pack/platform/plugins/shared/stack_connectors/server/connector_types/{sentinelone/
sentinelone.ts, crowdstrike/crowdstrike.ts, microsoft_defender_endpoint/microsoft_defender_endpoint.ts}
`registerSubActions`). `z.string().nullable().default(null)` is an optional, nullable field (config-schema's
`schema.nullable` in 8.x: absent or null pass); `z.coerce.number()` is `Num(coerce=True)`.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.sandbox.subaction_schemas import (
    AnyValue,
    Arr,
    Bool,
    Enum,
    F,
    Maybe,
    Node,
    Num,
    Obj,
    OneOf,
    Spec,
    Str,
    opt,
)

_ALERT_IDS = opt("alertIds", Arr(Str()))  # AlertIds: z.array(z.string()).optional()
_NSTR = Str()


def _nullable_strings(names: str) -> tuple[F, ...]:
    return tuple(opt(name, _NSTR, nullable=True) for name in names.split())


# SentinelOneBaseFilterSchema (getAgents, isolateHost, releaseHost): every key a nullable string filter
# passed to SentinelOne's /agents query, plus alertIds; strict.
_S1_FILTER_KEYS = """
K8SNodeName__contains coreCount__lt rangerStatuses adUserQuery__contains rangerVersionsNin rangerStatusesNin
coreCount__gte threatCreatedAt__gte decommissionedAt__lte operationalStatesNin appsVulnerabilityStatusesNin
mitigationMode createdAt__gte gatewayIp cloudImage__contains registeredAt__between threatMitigationStatus
installerTypesNin appsVulnerabilityStatuses threatResolved mitigationModeSuspicious isUpToDate
adComputerQuery__contains updatedAt__gte azureResourceGroup__contains scanStatus threatContentHash osTypesNin
threatRebootRequired totalMemory__between firewallEnabled gcpServiceAccount__contains updatedAt__gt
remoteProfilingStates filteredGroupIds agentVersions activeThreats machineTypesNin lastActiveDate__gt
awsSubnetIds__contains installerTypes registeredAt__gte migrationStatus cloudTags__contains totalMemory__gte
decommissionedAt__lt threatCreatedAt__lt updatedAt__lte osArch registeredAt__gt registeredAt__lt siteIds
networkInterfaceInet__contains groupIds uuids accountIds scanStatusesNin cpuCount__lte locationIds
awsSecurityGroups__contains networkStatusesNin activeThreats__gt infected osVersion__contains machineTypes
agentPodName__contains computerName__like threatCreatedAt__gt consoleMigrationStatusesNin computerName
decommissionedAt__between cloudInstanceId__contains createdAt__lte coreCount__between totalMemory__lte
remoteProfilingStatesNin adComputerMember__contains threatCreatedAt__between totalMemory__gt ids
agentVersionsNin updatedAt__between locationEnabled locationIdsNin osTypes encryptedApplications filterId
decommissionedAt__gt adUserMember__contains uuid coreCount__lte coreCount__gt cloudNetwork__contains
clusterName__contains cpuCount__gte query lastActiveDate__between rangerStatus domains cloudProvider
lastActiveDate__lt scanStatuses hasLocalConfiguration networkStatuses isPendingUninstall createdAt__gt
cpuCount__lt consoleMigrationStatuses adQuery updatedAt__lt createdAt__lt adComputerName__contains
cloudInstanceSize__contains registeredAt__lte networkQuarantineEnabled cloudAccount__contains
cloudLocation__contains rangerVersions networkInterfaceGatewayMacAddress__contains uuid__contains
agentNamespace__contains K8SNodeLabels__contains adQuery__contains K8SType__contains countsFor totalMemory__lt
externalId__contains filteredSiteIds decommissionedAt__gte cpuCount__gt threatHidden isUninstalled
computerName__contains lastActiveDate__lte adUserName__contains isActive userActionsNeeded threatCreatedAt__lte
domainsNin operationalStates externalIp__contains isDecommissioned networkInterfacePhysical__contains
lastActiveDate__gte createdAt__between cpuCount__between lastLoggedInUserName__contains awsRole__contains
K8SVersion__contains
"""
_S1_FILTER = Obj((*_nullable_strings(_S1_FILTER_KEYS), _ALERT_IDS), strict=True)

_S1_REMOTE_SCRIPTS = Obj((  # SentinelOneGetRemoteScriptsParamsSchema
    *_nullable_strings("query osTypes scriptType cursor groupIds ids"),
    opt("isAvailableForArs", Bool(), nullable=True),
    opt("limit", Num(min=1, max=1000, coerce=True), nullable=True),
    *_nullable_strings("siteIds"), opt("skip", Num(coerce=True), nullable=True),
    opt("skipCount", Bool(), nullable=True), *_nullable_strings("sortBy sortOrder")), strict=True)
_MIN1 = Str(min=1)
_S1_ACTIVITIES = Maybe(Obj((  # SentinelOneGetActivitiesParamsSchema (.optional(): params may be absent)
    opt("accountIds", _MIN1), opt("activityTypes", Str()), opt("activityUuids", _MIN1), opt("agentIds", _MIN1),
    opt("alertIds", _MIN1), opt("countOnly", Bool()),
    *(opt(f"createdAt__{op}", _MIN1) for op in ("between", "gt", "gte", "lt", "lte")),
    opt("cursor", _MIN1), opt("groupIds", _MIN1), opt("ids", _MIN1), opt("includeHidden", Bool()),
    opt("limit", Num(coerce=True)), opt("ruleIds", _MIN1), opt("siteIds", _MIN1), opt("skip", Num(coerce=True)),
    opt("skipCount", Bool()),
    *(opt(k, _MIN1) for k in ("sortBy", "sortOrder", "threatIds", "userEmails", "userIds"))), strict=True))
_S1_EXECUTE_SCRIPT = Obj((  # SentinelOneExecuteScriptParamsSchema
    F("filter", Obj((opt("uuids", _MIN1), opt("ids", _MIN1)), strict=True)),
    F("script", Obj((
        opt("apiKey", Str()), opt("inputParams", Str()), opt("outputDirectory", Str()),
        opt("outputDestination", Enum(("Local", "None", "SentinelCloud", "SingularityXDR"))),
        opt("passwordFromScope", Obj((opt("scopeLevel", Str()), opt("scopeId", Str())), strict=True)),
        opt("password", Str()), opt("requiresApproval", Bool()), F("scriptId", Str()), opt("scriptName", Str()),
        opt("scriptRuntimeTimeoutSeconds", Num(coerce=True)), opt("singularityxdrKeyword", Str()),
        opt("singularityxdrUrl", Str()), opt("taskDescription", Str())), strict=True)),
    _ALERT_IDS), strict=True)

# crowdstrike/schemas/v1.ts. The RTR sub actions (getRTRCloudScripts too) are registered behind
# `crowdstrikeConnectorRTROn`, on by default (common/experimental_features.ts), all with
# CrowdstrikeRTRCommandParamsSchema, `z.any()` ("TODO temporary any value"): any params pass.
_CS_AGENTS = Obj((F("ids", Arr(Str())),), strict=True)  # CrowdstrikeGetAgentsParamsSchema
_CS_HOST_ACTIONS = Obj((  # CrowdstrikeHostActionsParamsSchema
    F("command", Enum(("contain", "lift_containment"))), opt("actionParameters", Obj(unknowns="allow")),
    F("ids", Arr(Str())), _ALERT_IDS, opt("comment", Str())), strict=True)

# microsoft_defender_endpoint/schemas/v1.ts: filters are one non-empty string or a non-empty list of them.
_ONE_OR_MANY = OneOf((_MIN1, Arr(_MIN1, min=1)))


def _one_or_many(node: Node) -> OneOf:
    return OneOf((node, Arr(node, min=1)))


_HEALTH = Enum(("Active", "Inactive", "ImpairedCommunication", "NoSensorData", "NoSensorDataImpairedCommunication",
                "Unknown"))
_ACTION_TYPE = Enum(("RunAntiVirusScan", "Offboard", "LiveResponse", "CollectInvestigationPackage", "Isolate",
                     "Unisolate", "StopAndQuarantineFile", "RestrictCodeExecution", "UnrestrictCodeExecution"))
_ACTION_STATUS = Enum(("Pending", "InProgress", "Succeeded", "Failed", "TimeOut", "Cancelled"))
_PAGING = (opt("page", Num(min=1, coerce=True)), opt("pageSize", Num(min=1, max=1000, coerce=True)))
_MDE_AGENT_LIST = Obj((  # AgentListParamsSchema
    *(opt(k, _ONE_OR_MANY) for k in ("computerDnsName", "id", "version", "deviceValue", "aaDeviceId", "machineTags",
                                     "lastSeen", "exposureLevel", "onboardingStatus", "lastIpAddress")),
    opt("healthStatus", _one_or_many(_HEALTH)),
    *(opt(k, _ONE_OR_MANY) for k in ("osPlatform", "riskScore", "rbacGroupId")), *_PAGING), strict=True)
_MDE_GET_ACTIONS = Obj((  # GetActionsParamsSchema
    opt("id", _ONE_OR_MANY), opt("status", _one_or_many(_ACTION_STATUS)), opt("machineId", _ONE_OR_MANY),
    opt("type", _one_or_many(_ACTION_TYPE)), opt("requestor", _ONE_OR_MANY), opt("creationDateTimeUtc", _ONE_OR_MANY),
    *_PAGING, opt("sortField", _MIN1), opt("sortDirection", Enum(("asc", "desc")))), strict=True)
_MDE_ID_COMMENT = Obj((F("id", _MIN1), F("comment", _MIN1)), strict=True)  # Isolate/ReleaseHostParamsSchema
_MDE_ID = Obj((F("id", _MIN1),), strict=True)  # AgentDetailsParamsSchema, GetActionResultsParamsSchema

SECURITY: Mapping[str, Spec] = {
    # sentinelone/constants.ts SUB_ACTION, each registered in sentinelone.ts (no `test` sub action).
    ".sentinelone": Spec({
        "getRemoteScripts": _S1_REMOTE_SCRIPTS,
        "fetchAgentFiles": Obj((F("agentId", _MIN1), F("zipPassCode", Str(min=10)), F("files", Arr(_MIN1))),
                               strict=True),
        "downloadAgentFile": Obj((F("agentId", _MIN1), F("activityId", _MIN1)), strict=True),
        "getActivities": _S1_ACTIVITIES,
        "getRemoteScriptStatus": Obj((F("parentTaskId", Str()),), unknowns="allow"),  # .passthrough()
        "getRemoteScriptResults": Obj((F("taskIds", Arr(Str())),), strict=True),
        "downloadRemoteScriptResults": Obj((F("taskId", _MIN1),), strict=True),
        "getAgents": _S1_FILTER, "isolateHost": _S1_FILTER, "releaseHost": _S1_FILTER,
        "executeScript": _S1_EXECUTE_SCRIPT}),
    # crowdstrike/constants.ts SUB_ACTION, as crowdstrike.ts registers them.
    ".crowdstrike": Spec({"getAgentDetails": _CS_AGENTS, "hostActions": _CS_HOST_ACTIONS,
                          "getAgentOnlineStatus": _CS_AGENTS, "executeRTRCommand": AnyValue(),
                          "batchActiveResponderExecuteRTR": AnyValue(), "batchAdminExecuteRTR": AnyValue(),
                          "getRTRCloudScripts": AnyValue()}),
    # microsoft_defender_endpoint/constants.ts SUB_ACTION, as microsoft_defender_endpoint.ts registers them;
    # cancelAction only behind `microsoftDefenderEndpointCancelOn` (kept registered, as the sandbox did).
    ".microsoft_defender_endpoint": Spec({
        "getAgentDetails": _MDE_ID, "getAgentList": _MDE_AGENT_LIST, "isolateHost": _MDE_ID_COMMENT,
        "releaseHost": _MDE_ID_COMMENT, "testConnector": Obj(strict=True), "getActions": _MDE_GET_ACTIONS,
        "getLibraryFiles": Obj(strict=True),  # MicrosoftDefenderEndpointEmptyParamsSchema
        "runScript": Obj((F("id", _MIN1), opt("comment", _MIN1), F("parameters", Obj((
            F("scriptName", _MIN1), opt("args", _MIN1)), strict=True))), strict=True),
        "getActionResults": _MDE_ID,
        "cancelAction": Obj((F("comment", _MIN1), F("actionId", _MIN1)), strict=True)}),
}
