"""Operating the tenant (issue 7): read-only commands over an observed tenant.

    errors:  reconciler.ops.errors   find_errors(client, group=None) -> ErrorsReport
    report:  reconciler.ops.report   read_report(client) -> LicenseReport
    export:  reconciler.ops.export   export_policy(state, groups=()) -> str (YAML)
    migrate: reconciler.ops.migrate  propose_migration(state, ...) -> Migration

Each module has pure functions from a TenantState (plus the few Graph reads it needs) to a result
object, and renderers for text, markdown, json and csv. Only the `read_*` / `find_*` functions
talk to Graph, always through a read-only GraphClient.
"""
