#!/usr/bin/env python3
"""Supply-chain checks of the Dockerfiles and the Compose file (make lint).

For each Dockerfile given:
  - every FROM that names an image (not an earlier stage) should be pinned by
    digest (image:tag@sha256:<64 hex>) once its ARGs take their defaults:
    a warning per unpinned FROM, naming the *_DIGEST ARG to set;
  - a digest that is set but malformed (not "@sha256:" + 64 hex digits) is an
    error: the build would fail or, worse, pull something else;
  - the last stage must run as a non-root USER and have a HEALTHCHECK
    (errors), since docker-compose.yml and the docs rely on both.
For each Compose file given (--compose FILE): every `image:` of a service
that is not built here should be pinned by digest too (warnings).

Warnings do not fail the check unless --strict is given (release pipelines
that can reach the registries pin everything and pass --strict). How to pin:
the comment above the *_DIGEST ARGs in the Dockerfile.

Usage: scripts/check-dockerfile.py [--strict] [--compose FILE] DOCKERFILE...
"""

import argparse
import re
import sys

DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def logical_lines(text):
    """(line number, instruction line) with continuations joined, comments dropped."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def expand(value, args):
    return VAR_RE.sub(lambda m: args.get(m.group(1) or m.group(2), ""), value)


def arg_default(rest):
    name, _, default = rest.partition("=")
    default = default.strip()
    if len(default) >= 2 and default[0] == default[-1] and default[0] in "\"'":
        default = default[1:-1]
    return name.strip(), default


def check_dockerfile(path, problems, warnings):
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        problems.append("%s: cannot read: %s" % (path, e))
        return
    global_args, stage_args, stages = {}, {}, []
    in_stage = False
    last = {"from": None, "user": None, "healthcheck": False}
    for number, line in logical_lines(text):
        instruction, _, rest = line.strip().partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "ARG":
            name, default = arg_default(rest)
            (stage_args if in_stage else global_args)[name] = default
            if name.endswith("_DIGEST") and default and not DIGEST_RE.match(default):
                problems.append(
                    "%s:%d: ARG %s=%s is not a digest: give \"@sha256:\" and 64 hex digits, or nothing"
                    % (path, number, name, default)
                )
        elif instruction == "FROM":
            in_stage, stage_args = True, {}
            words = [w for w in rest.split() if not w.startswith("--")]
            if not words:
                problems.append("%s:%d: FROM without an image" % (path, number))
                continue
            ref = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            last = {"from": number, "user": None, "healthcheck": False}
            expanded = expand(ref, global_args)
            if expanded in stages or ref in stages:
                pass
            elif "@" in expanded and not DIGEST_RE.search(expanded):
                problems.append(
                    "%s:%d: FROM %s: malformed digest (want @sha256: and 64 hex digits)"
                    % (path, number, expanded)
                )
            elif not DIGEST_RE.search(expanded):
                digest_args = [
                    v for v in VAR_RE.findall(ref) for v in v if v and v.endswith("_DIGEST")
                ]
                hint = (
                    "set %s" % " / ".join(digest_args) if digest_args else "append @sha256:<digest>"
                )
                warnings.append(
                    "%s:%d: FROM %s is not pinned by digest (%s; see the comment above the *_DIGEST ARGs)"
                    % (path, number, expanded, hint)
                )
            if name:
                stages.append(name)
        elif instruction == "USER":
            last["user"] = expand(rest, {**global_args, **stage_args})
        elif instruction == "HEALTHCHECK":
            last["healthcheck"] = not rest.upper().startswith("NONE")
    if last["from"] is None:
        problems.append("%s: no FROM" % path)
        return
    user = (last["user"] or "").split(":")[0]
    if user in ("", "0", "root"):
        problems.append(
            "%s:%d: the last stage runs as root (add USER with a non-root UID)" % (path, last["from"])
        )
    if not last["healthcheck"]:
        problems.append("%s:%d: the last stage has no HEALTHCHECK" % (path, last["from"]))


def check_compose(path, warnings, problems):
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        problems.append("%s: cannot read: %s" % (path, e))
        return
    # Services built from this repository carry `build:`; their `image:` is
    # the local tag given to the result, not something pulled. The file is
    # read by indentation (two spaces per level), not parsed: enough for a
    # file that `docker compose config` accepts and that is kept in its style.
    section, service, built, images = None, None, set(), []
    for number, line in enumerate(lines, 1):
        top = re.match(r"^([A-Za-z0-9_.-]+):", line)
        if top:
            section, service = top.group(1), None
            continue
        if section != "services":
            continue
        m = re.match(r"^  ([A-Za-z0-9_.-]+):\s*$", line)
        if m:
            service = m.group(1)
            continue
        if service is None:
            continue
        if re.match(r"^    build:", line):
            built.add(service)
        m = re.match(r"^    image:\s*[\"']?([^\"'\s#]+)", line)
        if m:
            images.append((number, service, m.group(1)))
    for number, service, image in images:
        if service in built or DIGEST_RE.search(image):
            continue
        warnings.append(
            "%s:%d: service %s: image %s is not pinned by digest" % (path, number, service, image)
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dockerfiles", nargs="+")
    ap.add_argument("--compose", action="append", default=[])
    ap.add_argument("--strict", action="store_true", help="warnings fail the check too")
    opts = ap.parse_args()
    problems, warnings = [], []
    for path in opts.dockerfiles:
        check_dockerfile(path, problems, warnings)
    for path in opts.compose:
        check_compose(path, warnings, problems)
    for w in warnings:
        print("warning: " + w)
    for p in problems:
        print("error: " + p)
    checked = len(opts.dockerfiles) + len(opts.compose)
    print(
        "check-dockerfile: %d file(s), %d error(s), %d warning(s)%s"
        % (
            checked,
            len(problems),
            len(warnings),
            " (unpinned base images: reproducibility gap, see the Dockerfile)" if warnings else "",
        )
    )
    if problems or (opts.strict and warnings):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
