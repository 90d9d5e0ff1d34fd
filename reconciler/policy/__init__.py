"""The policy language (SPEC section 2): loading, schema, semantic checks, typed model.

from reconciler.policy import load_policy
policy = load_policy(["policies/"])      # raises PolicyError (every problem) or UsageError
"""

from reconciler.policy.load import MAX_FILE_BYTES, collect_files, load_policy, validate_paths
from reconciler.policy.model import (
    API_VERSION,
    CatalogRules,
    DirectLicenses,
    GroupSpec,
    LicenseSpec,
    Location,
    MaxRemovals,
    Policy,
    Ref,
    Safety,
    UsageLocations,
    UserLocation,
)

__all__ = [
    "API_VERSION",
    "MAX_FILE_BYTES",
    "CatalogRules",
    "DirectLicenses",
    "GroupSpec",
    "LicenseSpec",
    "Location",
    "MaxRemovals",
    "Policy",
    "Ref",
    "Safety",
    "UsageLocations",
    "UserLocation",
    "collect_files",
    "load_policy",
    "validate_paths",
]
