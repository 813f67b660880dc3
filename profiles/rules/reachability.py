"""Whether a campaign can reach a person on a channel: one rule for the profile
page (profiles.selectors.profile_reachability) and segments (segments.compiler's
"reachable" condition).

An unset MSG-email / MSG-sms / MSG-push means subscribed (CleverTap's default);
False is an opt-out. WhatsApp is the exception: WhatsApp Business only lets a
business message people who opted in, so MSG-whatsapp must be true.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class AddressChannel:
    """A channel that sends to an address held on the profile."""

    key: str  # as segment definitions name it
    label: str  # as the profile page shows it
    address: str  # Profile field holding the address
    flag: str  # Profile field holding the MSG-* subscription
    flag_name: str  # the property as clients send it
    opt_in_required: bool  # True: an unset flag is not consent

    def verdict(self, address: str, flag: bool | None) -> tuple[bool, str]:
        """(reachable, why not or the address)."""
        if not address:
            return False, f"no {self.address}"
        if flag is False:
            return False, f"{self.flag_name} is false (opted out)"
        if flag is None and self.opt_in_required:
            return False, f"{self.flag_name} is not set (no opt-in)"
        return True, address


ADDRESS_CHANNELS = (
    AddressChannel("email", "Email", "email", "msg_email", "MSG-email", opt_in_required=False),
    AddressChannel("sms", "SMS", "phone", "msg_sms", "MSG-sms", opt_in_required=False),
    AddressChannel(
        "whatsapp", "WhatsApp", "phone", "msg_whatsapp", "MSG-whatsapp", opt_in_required=True
    ),
)
ADDRESS_CHANNEL_BY_KEY = {channel.key: channel for channel in ADDRESS_CHANNELS}
PUSH_FLAG = "msg_push"
CHANNEL_KEYS = (*ADDRESS_CHANNEL_BY_KEY, "push")


def push_verdict(
    flag: bool | None, devices: Iterable[tuple[bool, bool | None]]
) -> tuple[bool, str]:
    """Push from the MSG-push flag and each device's (has a push token, push permission):
    reachable through a device with a token whose permission is not false."""
    devices = list(devices)
    with_token = [enabled for has_token, enabled in devices if has_token]
    if flag is False:
        return False, "MSG-push is false (opted out)"
    if not devices:
        return False, "no device"
    if not with_token:
        return False, "no push token on any device"
    enabled = sum(permission is not False for permission in with_token)
    if not enabled:
        return False, "push disabled on every device"
    return True, f"{enabled} device{'s' if enabled != 1 else ''}"
