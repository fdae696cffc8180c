"""Who may call a helper's Query and Budget services: report collectors and the sites they serve.

Every call on the collector port is authenticated by mutual TLS: the caller
presents a client certificate issued by the network's CA (``ipa keygen``),
and the helper accepts it only if its SHA-256 fingerprint is that of a
collector in the helper's config (``[[collectors]]``). The collector's name
is the config's, never a value the caller chooses. A collector is then
authorised per site: it may create queries and inspect budgets only for the
sites its config entry lists (``"*"`` is every site), and the report
collector bound into the reports' encryption must be its own name.

On an ``--insecure`` development network there is no TLS: the caller's
claimed name (gRPC metadata ``ipa-collector``) is trusted, and only the site
check applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import grpc

from ipa.certs import fingerprint
from ipa.errors import IpaError
from ipa_rpc import COLLECTOR_METADATA

__all__ = [
    "ANY_SITE",
    "CollectorConfig",
    "Collectors",
    "NotAuthorisedError",
    "UnauthenticatedError",
]

ANY_SITE = "*"


class UnauthenticatedError(IpaError):
    """The caller presented no certificate of a collector this helper knows."""


class NotAuthorisedError(IpaError):
    """A known collector asked for something its sites do not allow."""


@dataclass(frozen=True)
class CollectorConfig:
    """One report collector a helper serves: its name, its sites and its certificate's fingerprint."""

    name: str
    sites: tuple[str, ...]
    fingerprint: str | None = None  # SHA-256 of the certificate (hex); None only on insecure networks

    def serves(self, site: str) -> bool:
        return ANY_SITE in self.sites or site in self.sites


class Collectors:
    """The collectors of one helper's config; identifies callers and checks what they ask."""

    def __init__(self, collectors: Sequence[CollectorConfig], *, insecure: bool = False) -> None:
        self._by_name = {c.name: c for c in collectors}
        self._by_fingerprint = {c.fingerprint: c for c in collectors if c.fingerprint}
        self._insecure = insecure

    def identify(self, context: grpc.ServicerContext) -> CollectorConfig:
        """The collector making this call; UnauthenticatedError if it is none this helper knows."""
        if self._insecure:
            claimed = dict(context.invocation_metadata()).get(COLLECTOR_METADATA, "")
            known = self._by_name.get(str(claimed))
            if known is None:
                raise UnauthenticatedError(f"unknown report collector {claimed!r} (insecure network)")
            return known
        # grpc gives a list of values per property (typeshed's stub says bytes)
        presented = cast(list[bytes], context.auth_context().get("x509_pem_cert", [b""]))[0]
        if not presented:
            raise UnauthenticatedError("no client certificate: a report collector identity is needed")
        known = self._by_fingerprint.get(fingerprint(presented))
        if known is None:
            raise UnauthenticatedError("the client certificate is not one of this helper's report collectors")
        return known

    def authorise_site(self, collector: CollectorConfig, site: str) -> None:
        """NotAuthorisedError unless ``collector`` serves ``site``."""
        if not collector.serves(site):
            raise NotAuthorisedError(
                f"report collector {collector.name!r} is not authorised for site {site!r}"
            )

    def authorise_query(self, collector: str, site: str, report_collector: str) -> None:
        """A query of ``collector``'s for ``site`` over reports bound to ``report_collector``.

        NotAuthorisedError if the collector is unknown here, does not serve
        the site, or the reports were made for another collector.
        """
        known = self._by_name.get(collector)
        if known is None:
            raise NotAuthorisedError(f"report collector {collector!r} is not one of this helper's")
        self.authorise_site(known, site)
        if report_collector != collector:
            raise NotAuthorisedError(
                f"the reports are bound to report collector {report_collector!r}, "
                f"but the caller is {collector!r}"
            )
