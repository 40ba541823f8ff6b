"""What each image in docker-compose.yml reads and carries, as its own sources say: the one place
the compose tests take these facts from.

There is no Docker engine here, so no image is pulled or run. Each fact below was read in the
image's sources at the version the compose file names, and says where. When an image is
upgraded, read the new sources, change the fact here, and the tests show what no longer fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Image:
    """One image: what its start-up reads and which programs it ships."""

    reads: frozenset[str]
    """Environment variables its entrypoint or program reads (a variable set on the service
    that is in none of these, nor in a config file the service mounts, is read by nothing)."""
    requires: frozenset[str] = frozenset()
    """Variables it refuses to start without."""
    tools: frozenset[str] = frozenset()
    """Programs on its PATH that a health check or an entrypoint of ours may call."""
    config_variable: str | None = None
    """The variable naming the config file it runs, if any."""
    config_keys: frozenset[str] = frozenset()
    """Top-level keys its config file may hold (others stop it at start)."""
    sources: tuple[str, ...] = field(default=())


POSTGRES = Image(
    reads=frozenset({"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PGDATA"}),
    # docker-entrypoint.sh refuses to initialise a database without a password (unless trust).
    requires=frozenset({"POSTGRES_PASSWORD"}),
    tools=frozenset({"pg_isready", "psql", "sh"}),
    sources=(
        "https://github.com/docker-library/postgres/blob/master/16/bookworm/docker-entrypoint.sh",
        "https://github.com/docker-library/postgres/blob/master/16/bookworm/Dockerfile",
    ),
)

MINIO = Image(
    reads=frozenset({"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}),
    # The release image copies `mc` (whose `mc ready local` asks the local server's health
    # endpoint) and curl into /usr/bin; its base runs shell scripts (docker-entrypoint.sh).
    tools=frozenset({"minio", "mc", "curl", "sh"}),
    sources=("https://github.com/minio/minio/blob/master/Dockerfile.release",),
)

MINIO_CLIENT = Image(
    # Our minio-init hands the credentials to `mc alias set` through its own shell command.
    reads=frozenset({"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}),
    # ubi-micro base with mc added; /bin/sh is there (MinIO's own ubi-micro stage RUNs shell).
    tools=frozenset({"mc", "sh"}),
    sources=(
        "https://github.com/minio/mc/blob/master/Dockerfile.release",
        "https://github.com/minio/minio/blob/master/Dockerfile.release",
    ),
)

MARQUEZ = Image(
    # docker/entrypoint.sh: `java ${JAVA_OPTS} -jar marquez-*.jar server ${MARQUEZ_CONFIG}`,
    # MARQUEZ_CONFIG defaulting to the image's marquez.dev.yml. That file reads MARQUEZ_PORT,
    # MARQUEZ_ADMIN_PORT, POSTGRES_HOST, POSTGRES_PORT and SEARCH_ENABLED/HOST/PORT; its
    # database user and password are written in it (marquez/marquez). Any other variable
    # reaches Marquez only through a config file of ours that names it.
    reads=frozenset(
        {
            "MARQUEZ_CONFIG",
            "JAVA_OPTS",
            "MARQUEZ_PORT",
            "MARQUEZ_ADMIN_PORT",
            "POSTGRES_HOST",
            "POSTGRES_PORT",
            "SEARCH_ENABLED",
            "SEARCH_HOST",
            "SEARCH_PORT",
        }
    ),
    # Base eclipse-temurin:17 installs curl ("required for historical reasons"); the Marquez
    # Dockerfile adds postgresql-client and bash.
    tools=frozenset({"curl", "bash", "sh", "java", "pg_isready"}),
    config_variable="MARQUEZ_CONFIG",
    # MarquezConfig's sections, as in the image's own marquez.dev.yml.
    config_keys=frozenset(
        {"server", "db", "migrateOnStartup", "graphql", "logging", "search", "tags"}
    ),
    sources=(
        "https://github.com/MarquezProject/marquez/blob/0.51.1/Dockerfile",
        "https://github.com/MarquezProject/marquez/blob/0.51.1/docker/entrypoint.sh",
        "https://github.com/MarquezProject/marquez/blob/0.51.1/marquez.dev.yml",
        "https://github.com/MarquezProject/marquez/blob/0.51.1/api/src/main/java/marquez/MarquezApp.java",
        "https://github.com/adoptium/containers/blob/main/17/jdk/ubuntu/jammy/Dockerfile",
    ),
)

MARQUEZ_WEB = Image(
    # setupProxy.js exits unless MARQUEZ_HOST, MARQUEZ_PORT and WEB_PORT are set; Marquez's
    # docker-compose.web.yml passes REACT_APP_ADVANCED_SEARCH (false when run without search).
    reads=frozenset({"MARQUEZ_HOST", "MARQUEZ_PORT", "WEB_PORT", "REACT_APP_ADVANCED_SEARCH"}),
    requires=frozenset({"MARQUEZ_HOST", "MARQUEZ_PORT", "WEB_PORT"}),
    tools=frozenset({"node", "sh"}),
    sources=(
        "https://github.com/MarquezProject/marquez/blob/0.51.1/web/setupProxy.js",
        "https://github.com/MarquezProject/marquez/blob/0.51.1/docker-compose.web.yml",
        "https://github.com/MarquezProject/marquez/blob/0.51.1/docker/up.sh",
    ),
)

IMAGES: dict[str, Image] = {
    "postgres": POSTGRES,
    "minio/minio": MINIO,
    "minio/mc": MINIO_CLIENT,
    "marquezproject/marquez": MARQUEZ,
    "marquezproject/marquez-web": MARQUEZ_WEB,
}

# Where Marquez takes lineage events (OpenLineageResource, api/src/main/java/marquez/api).
MARQUEZ_LINEAGE_PATH = "/api/v1/lineage"


def image_of(reference: str) -> Image:
    """The facts for ``reference`` (``name:tag``)."""
    return IMAGES[reference.rsplit(":", 1)[0]]
