"""kcr: Kibana alerting connectors as code.

The data's way, one module per stage:
    desired (files -> DesiredState) -> secrets (references -> values) -> kibana (read LiveState)
    -> normalize -> planner (pure: Plan) -> render / applier
plus catalog (the connector types from schemas/), plan (the Plan and its JSON), state (the record
of applied secrets), export, sandbox/ (the offline Kibana) and cli (parse, dispatch, exit codes).
"""

__version__ = "0.1.0"
