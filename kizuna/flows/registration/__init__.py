"""Member registration: the flow, member info, marketing consent, withdrawal (see flow.py)."""

from .flow import COMMANDS, FLOWS, marketing, member_info, privacy_accept, profile, registration
from .steps import registration_offer
from .withdrawal import withdrawal

__all__ = ["COMMANDS", "FLOWS", "marketing", "member_info", "privacy_accept", "profile", "registration", "registration_offer",
           "withdrawal"]
