"""Exceptions raised by reconciler, and the exit code each one maps to.

Every failure a user can cause or meet is one of these; the CLI maps them to
the exit codes of SPEC section 3 and prints their message (never a traceback).

    ReconcilerError                      exit 1 unless stated
    ├── UsageError                       64  bad flag or argument combination
    ├── PolicyError                      3   the policy is invalid (carries every Problem found)
    ├── BlockedPlanError                 3   the plan has blocking violations and --force was not given
    ├── StalePlanError                   4   the saved plan no longer matches the tenant
    ├── WrongTenantError                 4   the policy or plan belongs to another tenant
    ├── PlanFileError                    3   a plan file is unreadable, corrupt or of an unsupported format_version
    ├── SeedError                        3   an emulator seed file is invalid
    └── GraphError                       1   anything that went wrong talking to Microsoft Graph
        ├── AuthenticationError              no token could be obtained (401, bad credentials)
        ├── PermissionDeniedError            403: names the application permission the call needs
        ├── NotFoundError                    404: names the object
        ├── ThrottledError                   the cap on total retry wait was exceeded
        ├── TransportError                   connection failures after retries, timeouts, TLS problems
        └── ReadOnlyViolation                a write was attempted through the read-only client
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CHANGES = 2
EXIT_INVALID = 3
EXIT_STALE = 4
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in an input file, reported as `path:line:column: message`."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class ReconcilerError(Exception):
    exit_code = EXIT_RUNTIME


class UsageError(ReconcilerError):
    exit_code = EXIT_USAGE


class PolicyError(ReconcilerError):
    exit_code = EXIT_INVALID

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(sorted(problems))
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid policy")


class BlockedPlanError(ReconcilerError):
    exit_code = EXIT_INVALID


class StalePlanError(ReconcilerError):
    exit_code = EXIT_STALE


class WrongTenantError(ReconcilerError):
    exit_code = EXIT_STALE


class PlanFileError(ReconcilerError):
    """A plan file that cannot be read: missing, not JSON, not a plan, or an unknown format_version."""

    exit_code = EXIT_INVALID


class SeedError(ReconcilerError):
    exit_code = EXIT_INVALID


class GraphError(ReconcilerError):
    """An error returned by Graph or met on the way to it."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.request_id = request_id
        super().__init__(message)


class AuthenticationError(GraphError):
    pass


class PermissionDeniedError(GraphError):
    pass


class NotFoundError(GraphError):
    pass


class ThrottledError(GraphError):
    pass


class TransportError(GraphError):
    pass


class ReadOnlyViolation(GraphError):
    pass
