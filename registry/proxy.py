"""nginx in front of the registry, in its pod: who may write.

The registry's own htpasswd gives every user every right, so the pod runs the
recipe of distribution's documentation instead (docs/recipes/nginx.md): nginx
terminates TLS with the registry's certificate and checks the same bcrypt
htpasswd, lets everyone it knows read (GET, HEAD) and only pushers write; the
registry listens on the pod's loopback, without TLS or auth of its own, so
nothing reaches it that did not pass nginx. Pure text, no resource made here.

Two files, not user names in the config: `htpasswd` (pushers and pullers) is
checked for reads, `pushers` (their lines alone) for writes, in a
`limit_except GET` block (which also allows HEAD). A puller's POST, PUT, PATCH
or DELETE is then refused with 401 before the registry sees it, and no user's
name, whatever characters it has, is ever parsed as nginx syntax.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where nginx listens in the pod: what the Service sends to (pod.CONTAINER_PORT).
PROXY_PORT = 5000
# Where the registry listens, on the pod's loopback alone.
REGISTRY_ADDRESS = "127.0.0.1:5002"
CONFIG_DIR = "/etc/registry-proxy"
CONFIG_FILE = "nginx.conf"
# The auth Secret's keys the proxy reads.
EVERYONE_FILE = "htpasswd"
PUSHERS_FILE = "pushers"


@dataclass(frozen=True)
class ProxyPaths:
    """Where the pod puts what nginx reads and writes."""

    certs_dir: str = "/certs"
    auth_dir: str = "/auth"
    # nginx's pid and temporary files (a writable emptyDir: the root filesystem is read-only).
    tmp_dir: str = "/tmp"


def nginx_config(realm: str, paths: ProxyPaths = ProxyPaths()) -> str:
    """The whole nginx.conf. `realm` is the registry's own (what it said before the proxy)."""
    quoted_realm = realm.replace("\\", "\\\\").replace('"', '\\"')
    tmp = paths.tmp_dir
    return f"""\
# Made by the registry program (registry/proxy.py); the pod reads it as is.
daemon off;
worker_processes 2;
pid {tmp}/nginx.pid;
error_log stderr warn;

events {{
    worker_connections 1024;
}}

http {{
    # Every temporary path nginx has, in the pod's writable /tmp: the image's
    # compiled-in ones are on a read-only root filesystem.
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    access_log /dev/stdout;
    server_tokens off;

    upstream registry {{
        server {REGISTRY_ADDRESS};
        keepalive 16;
    }}

    # The registry sets this header on what it answers; nginx's own 401 gets it too
    # (clients look for it), and the registry's is not doubled.
    map $upstream_http_docker_distribution_api_version $docker_distribution_api_version {{
        "" "registry/2.0";
    }}

    server {{
        listen {PROXY_PORT} ssl;
        ssl_certificate {paths.certs_dir}/tls.crt;
        ssl_certificate_key {paths.certs_dir}/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;

        # Layers stream to the registry as they come, of any size.
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        # The registry writes Location headers from these: https and the name the client dialled.
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-Proto https;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_read_timeout 900s;
        proxy_send_timeout 900s;
        chunked_transfer_encoding on;

        # The probes: the registry's own answer to /, with no password.
        location = / {{
            proxy_pass http://registry;
        }}

        location / {{
            auth_basic "{quoted_realm}";
            auth_basic_user_file {paths.auth_dir}/{EVERYONE_FILE};
            add_header Docker-Distribution-Api-Version $docker_distribution_api_version always;
            # Writes: pushers alone.
            limit_except GET {{
                auth_basic "{quoted_realm}";
                auth_basic_user_file {paths.auth_dir}/{PUSHERS_FILE};
            }}
            proxy_pass http://registry;
        }}
    }}
}}
"""


def proxy_command() -> list[str]:
    """nginx on our config alone: not the image's entrypoint, whose scripts edit its own."""
    # -e: the error log before the config is read; the image's default is a file the
    # pod's user may not write.
    return ["nginx", "-e", "stderr", "-c", f"{CONFIG_DIR}/{CONFIG_FILE}"]
