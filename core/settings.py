"""Settings: a TOML file, then ``RAYKERNEL_*`` environment variables, then CLI flags (flags win)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# Read when neither --config nor RAYKERNEL_CONFIG names a file: a checkout's own configs/.
DEFAULT_CONFIG_FILE = Path("configs") / "raykernel.toml"

# A toolset's name: a built-in group's, or a plugin's (its entry-point name or import spec).
TOOLSET_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


# An upstream MCP server's name: an attribute of raykernel_tools in session code.
UPSTREAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
UPSTREAM_RESERVED = frozenset({"servers", "call"})


def default_ray_temp() -> Path:
    """Where Ray keeps its temp folder unless told otherwise (``ray start --temp-dir``)."""
    return Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAYKERNEL_", extra="forbid")

    transport: Literal["stdio", "http"] = "stdio"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    path: str = "/mcp"
    workspace: Path = Field(default_factory=Path.cwd)
    config: Path | None = None
    # The server's own state (each session's packages, snapshots), outside the workspace that
    # sessions can write. Default: $XDG_STATE_HOME/raykernel/<a hash of the workspace path>
    # (~/.local/state/...). On a cluster: storage every node mounts at the same path.
    state_dir: Path | None = None
    # Where each identity but "local" works: a folder of the workspace by default
    # ("{identity}", a name made from the identity that no other identity shares), or any
    # path with {identity} in it (relative to the workspace, or absolute).
    identity_workspace: str = "{identity}"

    # HTTP security. Binding to a non-loopback address requires auth_token or a JWT verifier.
    # With neither, a loopback server makes a token of its own ("auto": kept 0600 in state_dir,
    # the same one next time; `raykernel --print-token` shows it); "none" turns that off (a
    # loopback host only): then any local process or user can run code as this server's user.
    auth: Literal["auto", "none"] = "auto"
    auth_token: SecretStr | None = None
    # Named bearer tokens, each an identity that owns its sessions: {name: "sha256:<hex>"}
    # (`raykernel --hash-token` prints the hash of a token read from stdin).
    auth_tokens: dict[str, str] = Field(default_factory=dict)
    # Identities that see and manage every identity's sessions ("token:ops", "jwt:<sub>").
    admin_identities: list[str] = Field(default_factory=list)
    jwt_public_key: str | None = None
    jwt_jwks_uri: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithm: str | None = None
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)
    max_request_bytes: int = Field(default=16 * 2**20, ge=1024)

    # Ray. No address: start a local Ray that lives and dies with this process.
    ray_address: str | None = None
    # Without an address, when the local Ray starts: "on_demand" serves the "default" session
    # from this process (its kernel a child of the server) and starts Ray when something needs
    # an actor (a second session); "at_launch" starts it at once, in the background.
    ray_start: Literal["on_demand", "at_launch"] = "on_demand"
    # Keep Ray's dashboard (and its HTTP port) on the local Ray: a process and ~60 MiB.
    dashboard: bool = False
    namespace: str = "raykernel"
    # A Ray actor asks 1 CPU by default, which would cap a 2-core laptop at 2 sessions.
    session_num_cpus: float = Field(default=0.0, ge=0)
    session_memory: int | None = Field(default=None, ge=0)
    # How Ray places sessions without a node_id: "SPREAD" over the nodes, or Ray's "DEFAULT".
    placement_strategy: Literal["SPREAD", "DEFAULT"] = "SPREAD"

    # Sessions.
    # "confined": each kernel runs in namespaces and under Landlock (docs/security.md);
    # "process": a plain child process that can do what the server's user can.
    isolation: Literal["confined", "process"] = "confined"
    # A new session's network unless create_session says: "off" gives its kernel no interface
    # but a loopback of its own (needs isolation "confined" and user namespaces); a list of
    # destinations ("pypi.org", "*.example.com:443", "10.1.0.0/16") lets it reach those only,
    # through a proxy outside its sandbox.
    session_network: Literal["on", "off"] | list[str] = "on"
    # The user's own Python environments sessions may run in (create_session's environment):
    # name -> an interpreter, a venv folder or a conda env folder. Env: RAYKERNEL_ENVIRONMENTS
    # as JSON ({"project": "/home/me/project/.venv"}).
    environments: dict[str, str] = Field(default_factory=dict)
    # Actors started ahead of time so create_session needs no cold start (0: off). Each idle
    # pooled actor costs two processes (an actor and its kernel, ~70 MiB PSS). None: 2 on a
    # cluster, 1 on an embedded Ray.
    warm_pool_size: int | None = Field(default=None, ge=0, le=64)
    # Sessions in all, hibernated ones included.
    max_sessions: int = Field(default=1000, ge=1, le=100_000)
    # Sessions with live processes at once; a new or resuming session past it makes room by
    # hibernating the least recently used idle one. None: from the machine's memory.
    max_resident_sessions: int | None = Field(default=None, ge=1)
    # A session idle this long is hibernated: its state saved, its processes freed; the next
    # call resumes it (0: never).
    hibernate_after: float = Field(default=1800.0, ge=0)
    # "after_run": after each successful run the session saves what changed (a crash then costs
    # at most that run; rewind_session goes back); create_session may ask per session.
    checkpoint: Literal["off", "after_run"] = "off"
    checkpoint_depth: int = Field(default=20, ge=1, le=1000)
    checkpoint_max_bytes: int = Field(default=1 << 30, ge=1 << 20)
    # Per identity (None: no quota beyond max_sessions): sessions it may hold, and runs it may
    # have in flight (running or queued) at once.
    max_sessions_per_identity: int | None = Field(default=None, ge=1)
    max_concurrent_runs_per_identity: int | None = Field(default=None, ge=1)
    # Delete sessions (never "default") with no run for this many seconds (0: never).
    idle_timeout: float = Field(default=0.0, ge=0)
    default_timeout: float = Field(default=300.0, gt=0)
    max_timeout: float = Field(default=3600.0, gt=0)
    # How long an interrupted run may take to stop before its actor is killed and restarted.
    interrupt_grace: float = Field(default=3.0, gt=0)
    max_output_bytes: int = Field(default=100_000, ge=1_000)
    max_code_bytes: int = Field(default=1_000_000, ge=1_000)
    max_file_bytes: int = Field(default=10_000_000, ge=1_000)
    # The JSON value a plugin's function (app.sessions.call_function) may send back.
    max_result_bytes: int = Field(default=10_000_000, ge=1_000)
    # Images above this are downscaled (then re-encoded as JPEG) before they are inlined in a
    # reply; the file saved under outputs/ keeps full size.
    max_image_bytes: int = Field(default=1_000_000, ge=10_000)
    # How run_python_code replies: "structured" gives structuredContent plus content blocks
    # (JSON text, images, links to created files); "content" gives the content blocks only, for
    # clients that hide images when structured content is present.
    result_format: Literal["structured", "content"] = "structured"
    # Heap limit per session (RLIMIT_DATA): past it user code gets MemoryError. None: a quarter
    # of the machine's memory, well below Ray's memory monitor (95%); 0: no limit.
    session_memory_limit: int | None = Field(default=None, ge=0)
    # The node's memory guard (docs/limits.md: Memory between sessions): past this share of the
    # node's memory the run of the session using the most is stopped (MemoryError, variables
    # kept), then the next; past halfway from it to full, the biggest kernel is killed and new,
    # resumed and forked sessions are refused there (NodeFull). 0 turns the guard off.
    memory_high_water: float = Field(default=0.85, ge=0, lt=1)
    # Bytes all sessions' kernels on a node may use together, as the guard counts them (their
    # whole process trees); None: the node's own memory is the only bound.
    session_memory_budget: int | None = Field(default=None, ge=1 << 20)
    # Child processes a session may keep alive; past it they are all killed (0: no bound).
    max_session_processes: int = Field(default=64, ge=0)
    # A session that dies this many times in a row stays dead until restart_kernel.
    max_crash_streak: int = Field(default=5, ge=1)
    install_timeout: float = Field(default=600.0, gt=0)
    allow_package_urls: bool = False
    # install_dependencies takes wheels only: building a source package runs its own code.
    # True lets sdists build, in the session's sandbox (its folders, the cache, a temp folder).
    allow_source_builds: bool = False
    # transfer_variable and fork_session move pickles, and a pickle can carry code: between two
    # identities' sessions (an admin's included) they are refused unless this is true, so one
    # tenant's bytes are never unpickled in another's kernel.
    allow_pickles_across_identities: bool = False

    # Plugins: entry points in group "raykernel" load unless blocked; an allow-list narrows them.
    blocked_plugins: list[str] = Field(default_factory=list)
    allowed_plugins: list[str] | None = None
    # Plugins to load that are not installed as entry points: import specs ("my_module" or
    # "package.module:object"), importable from PYTHONPATH.
    plugins: list[str] = Field(default_factory=list)
    # Which groups of tools clients are offered (docs/tools.md: Toolsets): "default" (sessions,
    # execution, files, scripts, introspection, and every plugin's own group), "all", or names,
    # e.g. "default,state". A comma list in the environment and on the command line. Names no
    # plugin registers are refused at start.
    toolsets: Annotated[tuple[str, ...], NoDecode] = ("default",)

    # Code mode (docs/tools.md: Code mode). Upstream MCP servers session code may call through
    # raykernel_tools, in a client's config shape: {name: {command, args, env, cwd}} (stdio) or
    # {name: {url, headers}} (streamable HTTP); RAYKERNEL_MCP_SERVERS as JSON. The front end
    # holds the connections: a kernel's network setting does not matter to them.
    mcp_servers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Which of them each identity's sessions may call: {identity: [server, ...]} ("*": all).
    # An identity not listed: "local" may call every one, any other none.
    mcp_server_access: dict[str, list[str]] = Field(default_factory=dict)
    # Upstream tools ("server.tool", "server.*") asked for the client's consent before code
    # runs them, besides those whose annotations say destructiveHint.
    mcp_approval: list[str] = Field(default_factory=list)

    log_level: str = "INFO"

    @field_validator("workspace")
    @classmethod
    def _absolute_workspace(cls, value: Path) -> Path:
        return Path(os.path.realpath(value.expanduser()))

    @model_validator(mode="after")
    def _default_state_dir(self) -> Settings:
        if self.state_dir is None:
            root = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
            digest = hashlib.sha256(str(self.workspace).encode()).hexdigest()[:16]
            self.state_dir = root / "raykernel" / digest
        self.state_dir = Path(os.path.realpath(self.state_dir.expanduser()))
        return self

    def refuse_inside(self, ray_temp: Path) -> None:
        """Refuse a workspace or state_dir inside Ray's temp folder: every kernel covers that
        folder with an empty one (its sockets must stay out of reach), so it would find
        nothing there and die at start. ``ValueError`` names both paths."""
        ray_temp = Path(os.path.realpath(ray_temp))
        places = {"workspace": self.workspace, "state_dir": self.store}
        if self.identity_workspace.startswith("/"):
            base = self.identity_workspace.split("{identity}")[0]
            places["identity_workspace"] = Path(os.path.realpath(base or "/"))
        for name, place in places.items():
            if place == ray_temp or place.is_relative_to(ray_temp):
                raise ValueError(
                    f"{name} {place} is inside Ray's temp folder {ray_temp}, which every "
                    "session's kernel sees as an empty folder (Ray's sockets are hidden from "
                    f"it): move the {name}, or Ray's temp folder (ray start --temp-dir)"
                )

    @property
    def resident_limit(self) -> int:
        """``max_resident_sessions``, or what half the machine's memory holds at ~256 MiB
        a session."""
        if self.max_resident_sessions is not None:
            return self.max_resident_sessions
        import psutil

        return max(4, psutil.virtual_memory().total // 2 // (256 << 20))

    @property
    def store(self) -> Path:
        """``state_dir``, resolved."""
        assert self.state_dir is not None
        return self.state_dir

    @model_validator(mode="after")
    def _ray_address_from_ray(self) -> Settings:
        # Ray's own variable counts too, below every raykernel source: one place decides
        # whether this front end is on a cluster (and so whether sessions are detached).
        if not self.ray_address and os.environ.get("RAY_ADDRESS"):
            self.ray_address = os.environ["RAY_ADDRESS"]
        return self

    @property
    def detached(self) -> bool:
        """On a cluster, sessions outlive the front end (detached actors, found again by the
        next one); an embedded Ray dies with the front end anyway."""
        return bool(self.ray_address)

    @property
    def pool_size(self) -> int:
        """``warm_pool_size``, or its default for where the server runs."""
        if self.warm_pool_size is not None:
            return self.warm_pool_size
        return 2 if self.ray_address else 1

    @property
    def ray_at_launch(self) -> bool:
        """Ray starts with the server (always on a cluster), not when first needed."""
        return bool(self.ray_address) or self.ray_start == "at_launch"

    @property
    def local_default(self) -> bool:
        """The "default" session is served by this process until Ray is needed: an embedded
        server, Ray on demand, one local identity."""
        return not self.ray_address and self.ray_start == "on_demand" and not self.auth_enabled

    @property
    def auth_enabled(self) -> bool:
        """Authentication is configured (tokens, a JWT verifier): each caller is an identity."""
        return bool(self.auth_token or self.auth_tokens or self.jwt_public_key or self.jwt_jwks_uri)

    @property
    def local_token_required(self) -> bool:
        """An HTTP server with no authentication configured requires its own token (its
        callers are the machine's user: identity ``local``), unless ``auth = "none"``."""
        return self.transport == "http" and self.auth == "auto" and not self.auth_enabled

    @field_validator("session_network")
    @classmethod
    def _destinations(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list):
            from raykernel.actors.egress import parse_rules

            parse_rules(value)
        return value

    @field_validator("environments")
    @classmethod
    def _environment_names(cls, value: dict[str, str]) -> dict[str, str]:
        from raykernel.errors import InvalidSetting

        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
                raise InvalidSetting(f"environments: {name!r} is not a name (letters, digits, _.-)")
        return value

    @field_validator("toolsets", mode="before")
    @classmethod
    def _toolset_names(cls, value: Any) -> tuple[str, ...]:
        from raykernel.errors import InvalidSetting

        names = value.split(",") if isinstance(value, str) else value
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise InvalidSetting("toolsets: a comma list of names, or 'all'")
        names = tuple(name.strip() for name in names if name.strip())
        if not names:
            raise InvalidSetting("toolsets: name at least one toolset ('default', 'all', ...)")
        bad = [name for name in names if not TOOLSET_NAME.fullmatch(name)]
        if bad:
            raise InvalidSetting(f"toolsets: {bad[0]!r} is not a toolset name")
        return names

    @field_validator("mcp_servers")
    @classmethod
    def _upstreams(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from raykernel.errors import InvalidSetting

        for name, config in value.items():
            # A Python name: session code reaches it as raykernel_tools.<name>.
            if not UPSTREAM_NAME.fullmatch(name) or name in UPSTREAM_RESERVED:
                raise InvalidSetting(
                    f"mcp_servers: {name!r} is not a usable server name (a Python identifier, "
                    f"not one of {', '.join(sorted(UPSTREAM_RESERVED))})"
                )
            if not isinstance(config, dict) or ("command" in config) == ("url" in config):
                raise InvalidSetting(
                    f"mcp_servers[{name!r}]: give either command (stdio) or url (HTTP)"
                )
        return value

    @field_validator("identity_workspace")
    @classmethod
    def _has_identity(cls, value: str) -> str:
        if "{identity}" not in value:
            raise ValueError("identity_workspace must contain {identity}")
        return value

    @field_validator("auth_tokens")
    @classmethod
    def _hashed_tokens(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name):
                raise ValueError(f"auth_tokens: bad name {name!r} (letters, digits, _.@-)")
            if not re.fullmatch(r"sha256:[0-9a-fA-F]{64}", digest):
                raise ValueError(
                    f"auth_tokens[{name!r}] must be 'sha256:<64 hex digits>' (a hash, never "
                    "the token: see raykernel --hash-token)"
                )
        return value

    @field_validator("path")
    @classmethod
    def _leading_slash(cls, value: str) -> str:
        return value if value.startswith("/") else "/" + value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = _config_file(init_settings())
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


def _config_file(init_values: dict[str, Any]) -> Path | None:
    named = init_values.get("config") or os.environ.get("RAYKERNEL_CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build settings; ``overrides`` (CLI flags) win over env vars, which win over the file."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
