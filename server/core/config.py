"""SanKe settings, read once from the environment (prefix ``SANKE_``).

Embedded defaults run everything on one machine: a SQLite file under the data
folder and an in-process event bus.  Setting ``SANKE_DATABASE_URL`` to a
PostgreSQL URL and ``SANKE_REDIS_URL`` lets several nodes share rooms and
records.

The secret key has no literal default: when unset it is generated on first run
and stored (mode 0600) in the data folder, so tokens survive restarts without a
shared placeholder secret ever existing in the code.
"""

from __future__ import annotations

import os
import secrets
import socket
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from media.ice import IcePolicy

_PLACEHOLDER_SECRETS = {"changeme", "secret", "change-me", "sanke", "test"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SANKE_", env_file=None, extra="ignore")

    data_dir: Path = Field(default=Path("data"))
    """Folder for the SQLite file, the generated secret key, uploads and recordings."""

    database_url: str | None = None
    """SQLAlchemy URL. Unset: ``sqlite:///<data_dir>/sanke.db``. PostgreSQL: ``postgresql+psycopg://...``."""

    redis_url: str | None = None
    """Redis URL for the shared event bus. Unset: the in-process bus (single node)."""

    secret_key: str | None = None
    """Key that signs access and join tokens. Unset: generated once, stored in ``<data_dir>/secret_key``."""

    host: str = "127.0.0.1"
    """Where ``sanke serve`` listens. A loopback address (the default) is reachable only from this
    machine, and the media then gathers on loopback too unless the ``ice_*`` addresses say otherwise."""
    port: int = 8000

    timezone: str = "Asia/Shanghai"
    """Wall-clock zone of the timetable; lesson times are stored as local times in this zone."""

    room_open_lead_minutes: int = 10
    """How long before a lesson starts its room opens."""

    room_close_grace_minutes: int = 10
    """How long after a lesson ends its room stays open."""

    record_late_grace_minutes: int = 5
    """A lesson that starts (the main classroom's first publish) later than this after its
    scheduled start is recorded as late (准时率)."""

    event_flush_interval_seconds: float = 0.5
    """How often the session event log writes what has gathered (at most this much is lost if
    the process is killed; a graceful shutdown writes everything)."""

    presence_mark_interval_seconds: float = Field(default=30.0, gt=0)
    """An open session with no other event for this long gets a ``presence`` mark in the event log;
    a session cut by a crash ends at its last event, so at most this much (plus a flush) of its
    time is uncertain."""

    loop_watch_file: Path | None = None
    """Opt-in diagnostics (``SANKE_LOOP_WATCH_FILE``): the event loop's lag, its stalls with the stacks
    that ran in them, and the garbage collections' times are appended to this file as JSON lines
    (``server.core.loopwatch``).  Unset: nothing is measured."""

    loop_watch_census: bool = False
    """With ``loop_watch_file``: also a census of the garbage collector's objects by type every 10 s
    (which itself stalls the loop: for a diagnosis, not a measurement)."""

    node_id: str = ""
    """This server's name among several nodes (``SANKE_NODE_ID``; default ``<host name>:<port>``, the
    same after every restart).  A restarted node recovers the sessions and recordings it left open, and
    registers under this name (``server.core.nodes``)."""

    public_url: str | None = None
    """The URL clients reach this node by (``SANKE_PUBLIC_URL``, e.g. ``https://node1.example.edu.cn``).
    Unset: ``http://<host>:<port>``, the listen address."""

    node_heartbeat_seconds: float = Field(default=2.0, gt=0, le=60)
    """How often a node writes its load to Redis (``SANKE_NODE_HEARTBEAT_SECONDS``); an entry lives three
    heartbeats, so a node that stops heartbeating is gone from the registry within that."""

    node_max_rooms: int | None = Field(default=None, ge=0)
    """Rooms this node should host at most (``SANKE_NODE_MAX_ROOMS``), reported as its capacity.
    Unset: no limit of its own (its workers' consumers are the limit)."""

    room_lease_seconds: float = Field(default=3.0, gt=0, le=300)
    """How long a room's owner holds its lease in Redis without renewing it (``SANKE_ROOM_LEASE_SECONDS``;
    renewed every third of it, ``server.core.placement``): a room whose owner died is placed again on
    the next join within this long (at once when the owner's registry entry is already gone) — most of
    a failover's time; an owner that cannot renew for ¾ of it stops its rooms."""

    drain_timeout_s: float = Field(default=2700.0, ge=0, le=86400)
    """After SIGTERM (a drain), how long a node with other nodes beside it waits for its lessons to end
    (``SANKE_DRAIN_TIMEOUT_S``, 45 minutes: a lesson that just began ends); then the lessons still on it
    move to other nodes, announced (``room_moving``), and the node stops."""

    node_worker_consumers: int = Field(default=300, ge=1)
    """Consumers (one subscriber receiving one track) one media worker forwards comfortably
    (``SANKE_NODE_WORKER_CONSUMERS``), reported as the node's capacity per worker. It is also the
    limit past which a lesson's further subscribers are placed on another media worker of this node,
    fed by a pipe from the lesson's own worker (``media.pipe``)."""

    metrics_token: SecretStr | None = None
    """Bearer token that lets a Prometheus server elsewhere scrape ``/metrics``
    (``SANKE_METRICS_TOKEN``). Unset: only callers on this machine (loopback, not through a proxy) may."""

    lifecycle_interval_seconds: float = 15.0
    """How often the lifecycle task opens and closes rooms."""

    access_token_minutes: int = 12 * 60
    join_token_seconds: int = 120
    """Join tokens are short-lived: a client asks for one right before connecting."""

    signaling_unjoined_per_address: int = Field(default=20, ge=1)
    """Lesson WebSockets one client address (an IPv6 /64) may hold open before they sent ``join``
    (``SANKE_SIGNALING_UNJOINED_PER_ADDRESS``); more are closed with 4029. Behind a reverse proxy the
    address is the one the proxy forwards (uvicorn's ``--forwarded-allow-ips``)."""

    signaling_connects_per_address_per_minute: int = Field(default=120, ge=1)
    """New lesson WebSockets per client address per minute, in bursts of as many (a school behind
    one NAT address reconnecting all its classrooms at once); beyond it they are closed with 4029."""

    feed_token_days: int = 365
    """Lifetime of a calendar-feed token (read-only, only for the .ics feeds, revocable)."""

    max_upload_bytes: int = 5 * 1024 * 1024
    """Largest accepted timetable upload."""

    ice_servers: str | None = None
    """STUN/TURN servers for the SFU and browsers, comma-separated
    (``stun:host:3478,turn:user:pass@host:3478?transport=udp``) or a JSON list. Unset: none, never a public default.
    A TURN URL without ``user:pass@`` (``turn:host:3478?transport=tcp``, ``turns:host:443?transport=tcp``) gets
    credentials minted per participant from ``turn_secret``; only browsers get those, the SFU never relays."""

    turn_secret: SecretStr | None = None
    """coturn's ``static-auth-secret`` (``use-auth-secret``, the TURN REST API): each ``joined`` (and
    ``resumed``) carries credentials minted from it for that user (``media.turn``). Never sent or logged."""

    turn_ttl_seconds: int | str | None = None
    """Lifetime of a minted TURN credential, in seconds (``SANKE_TURN_TTL_SECONDS``). Unset: 6 h, longer
    than a lesson (a page connecting mid-lesson with an expired credential gets no relay)."""

    ice_host_addresses: str | None = None
    """Comma-separated local IPs to gather host candidates on (tests: ``127.0.0.1``); ``*``: every
    interface. Unset: loopback when ``host`` is a loopback address and ``ice_allowed_networks`` is
    unset too (see ``media.ice.listen_defaults``), otherwise every interface."""

    ice_allowed_networks: str | None = None
    """Comma-separated networks (tests: ``127.0.0.0/8,::1/128``). Set: other candidates and sources are
    refused. Unset: loopback only when ``host`` is a loopback address and ``ice_host_addresses`` is
    unset too, otherwise any."""

    ice_announced_address: str | None = None
    """Public IP written into the SFU's host candidates when it sits behind NAT."""

    media_workers: int | None = None
    """Media worker processes (``SANKE_MEDIA_WORKERS``). Unset: one per CPU core. 0: one worker
    inside the server process (tests, small machines). At most 64."""

    media_pin_workers: bool = False
    """Pin media worker *i* to CPU core *i* (``SANKE_MEDIA_PIN_WORKERS``). Off by default: on a node
    that also runs other busy processes a pinned worker waits for its core while another is idle
    (``docs/performance.md`` has the measurements); on a dedicated media node with one worker per
    core it keeps each forwarding loop on its own core."""

    media_spare_worker: bool = True
    """Keep one idle media worker process ready (``SANKE_MEDIA_SPARE_WORKER``): a worker that dies is
    replaced by it at once, so its lessons get their media back within seconds. No effect with
    ``media_workers=0``."""

    media_pipe_host: str = "127.0.0.1"
    """The address the pipes of this node's media workers bind on (``SANKE_MEDIA_PIPE_HOST``): loopback
    between workers of one node; in a cluster whose lessons spread over nodes, this node's address that
    the other nodes reach."""

    cluster_secret: SecretStr | None = None
    """Secret every node of a cluster shares (``SANKE_CLUSTER_SECRET``, at least 16 characters): it
    authenticates and encrypts the channel over which a node uses another node's media workers
    (``media.secure``). Needed by ``media_remote_listen`` and ``media_remote_workers``."""

    media_remote_listen: str | None = None
    """``host:port`` where this node offers its media workers to the other nodes
    (``SANKE_MEDIA_REMOTE_LISTEN``; ``media.remote``). Unset: not offered."""

    media_remote_workers: str | None = None
    """Comma-separated ``host:port`` of other nodes' ``media_remote_listen`` (``SANKE_MEDIA_REMOTE_WORKERS``):
    a lesson whose subscribers outgrow this node's workers spreads onto theirs. Unset: this node's only."""

    recording_retention_days: int = Field(default=180, ge=0)
    """Lesson recordings (录播) are kept this many days after the lesson, then their files are deleted
    and the recording is marked expired (``SANKE_RECORDING_RETENTION_DAYS``; 0 keeps them for ever)."""

    compose_workers: int = Field(default=1, ge=1, le=2)
    """How many one-MP4 downloads of recordings are composed at the same time (1 or 2; each uses a core)."""

    hls_link_seconds: int = Field(default=7200, ge=60, le=86400)
    """How long a famous-school lesson's stream link lives at least (``SANKE_HLS_LINK_SECONDS``, 2 h; rounded
    up to five minutes, ``server.core.hls_sign``). The page asks for a fresh one before it expires."""

    hls_base_url: str | None = None
    """Where viewers fetch the streams (``SANKE_HLS_BASE_URL``, e.g. ``https://live.example.edu.cn``: an nginx
    or CDN origin, ``docs/operations.md``): the stream links' ``main_url`` and ``screen_url`` start with it.
    Unset: they are paths on this server."""

    webhook_poll_seconds: float = Field(default=2.0, gt=0, le=60)
    """How often a node looks for webhook deliveries that are due (``SANKE_WEBHOOK_POLL_SECONDS``); an
    event is sent at most this long after it was committed, by one node."""

    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """How long one webhook POST may take, connecting included (``SANKE_WEBHOOK_TIMEOUT_SECONDS``); longer is
    a failed attempt."""

    webhook_lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    """How long a node holds a delivery it claimed (``SANKE_WEBHOOK_LEASE_SECONDS``; more than the timeout):
    a node killed mid-delivery leaves it to another node after this."""

    webhook_max_attempts: int = Field(default=30, ge=1, le=100)
    """Attempts before a delivery is marked failed (``SANKE_WEBHOOK_MAX_ATTEMPTS``; an admin may retry it).
    With the default back-off, 30 attempts span 10-20 hours (about 15 on average): a receiver down
    overnight still gets every event."""

    webhook_backoff_base_seconds: float = Field(default=5.0, gt=0, le=3600)
    """Wait after the first failed attempt (``SANKE_WEBHOOK_BACKOFF_BASE_SECONDS``); it doubles with each
    further failure up to the cap, times a random factor between 0.5 and 1."""

    webhook_backoff_cap_seconds: float = Field(default=3600.0, gt=0, le=86400)
    """Longest wait between two attempts (``SANKE_WEBHOOK_BACKOFF_CAP_SECONDS``)."""

    webhook_batch: int = Field(default=20, ge=1, le=500)
    """Deliveries one node claims and sends at once (``SANKE_WEBHOOK_BATCH``)."""

    @field_validator("webhook_lease_seconds")
    @classmethod
    def _lease_outlasts_timeout(cls, value: float, info) -> float:  # type: ignore[no-untyped-def]
        timeout = info.data.get("webhook_timeout_seconds", 10.0)
        if value <= timeout:
            raise ValueError(f"SANKE_WEBHOOK_LEASE_SECONDS ({value}) must be longer than "
                             f"SANKE_WEBHOOK_TIMEOUT_SECONDS ({timeout})")
        return value

    @field_validator("media_remote_listen", "media_remote_workers")
    @classmethod
    def _check_remote(cls, value: str | None, info) -> str | None:  # type: ignore[no-untyped-def]
        if not value:
            return None
        from media.remote import split_address

        for address in value.split(","):
            split_address(address)
        secret = info.data.get("cluster_secret")
        if secret is None or len(secret.get_secret_value()) < 16:
            raise ValueError(f"SANKE_{info.field_name.upper()} needs SANKE_CLUSTER_SECRET (at least 16 characters)")
        return value

    @field_validator("media_workers")
    @classmethod
    def _check_media_workers(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 64:
            raise ValueError(
                f"SANKE_MEDIA_WORKERS must be between 0 (one worker in the server process) and 64, not {value}")
        return value

    @property
    def effective_node_id(self) -> str:
        return self.node_id or f"{socket.gethostname()}:{self.port}"

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def node_ttl_seconds(self) -> float:
        """How long a node's registry entry outlives its last heartbeat: three heartbeats."""
        return 3 * self.node_heartbeat_seconds

    @property
    def effective_media_workers(self) -> int:
        """How many media worker processes to start (0: one worker in this process)."""
        if self.media_workers is not None:
            return self.media_workers
        return max(1, min(os.cpu_count() or 1, 64))

    def ice_strings(self) -> dict[str, str | None]:
        """The ICE settings in force, for media worker processes (see ``media.worker_process``):
        as given, with the loopback defaults of a server listening on loopback."""
        from media.ice import listen_defaults

        hosts, networks = listen_defaults(self.host, self.ice_host_addresses, self.ice_allowed_networks)
        return {
            "ice_servers": self.ice_servers,
            "ice_host_addresses": hosts,
            "ice_allowed_networks": networks,
            "ice_announced_address": self.ice_announced_address,
        }

    def ice_policy(self) -> "IcePolicy":
        """The server's ICE policy, with the TURN secret that mints browsers' credentials.

        Raises ``ValueError`` (zh-CN / English, naming the variable, never showing the secret) for a
        bad setting: ``create_app`` calls it, so ``sanke serve`` stops at start, not at the first join."""
        from media.ice import IcePolicy

        strings = self.ice_strings()
        secret = self.turn_secret.get_secret_value() if self.turn_secret is not None else None
        policy = IcePolicy.from_strings(strings["ice_servers"], strings["ice_host_addresses"],
                                        strings["ice_allowed_networks"], strings["ice_announced_address"],
                                        secret, self.turn_ttl_seconds)
        policy.check_minting()
        return policy

    @field_validator("secret_key")
    @classmethod
    def _refuse_placeholder(cls, value: str | None) -> str | None:
        if value is not None and (value.lower() in _PLACEHOLDER_SECRETS or len(value) < 16):
            raise ValueError("SANKE_SECRET_KEY must be a real secret of at least 16 characters")
        return value

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sanke.db').resolve()}"

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir

    def effective_secret_key(self) -> str:
        """The configured key, or the one generated on first run and kept in the data folder."""
        if self.secret_key:
            return self.secret_key
        path = self.ensure_data_dir() / "secret_key"
        if path.exists():
            key = path.read_text().strip()
            if key:
                return key
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
