#!/usr/bin/env python3
"""Fails unless every service, RPC, message, field, enum, enum value and
extension (custom option) under proto/concierge carries a leading comment,
and none carries a trailing one.

Trailing comments are refused because protoc and buf attach them to the
element on their own line: `rpc A(...);  // Does B.` documents A with the
sentence meant for B, and generated SDKs show readers the wrong contract.

Usage: check-proto-comments.py IMAGE.binpb
where IMAGE is `buf build --as-file-descriptor-set -o IMAGE.binpb` (source
info is kept by default).
"""

import sys

from google.protobuf import descriptor_pb2

# Field numbers of FileDescriptorProto, DescriptorProto, … that make up a
# SourceCodeInfo path (descriptor.proto).
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE, FILE_EXTENSION = 4, 5, 6, 7
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM, MESSAGE_ONEOF = 2, 3, 4, 8
ENUM_VALUE = 2
SERVICE_METHOD = 2


def elements(fd):
    """Yields (path, kind, full name) for every element that needs a comment."""
    pkg = fd.package

    def enum(e, path, scope):
        name = f"{scope}.{e.name}"
        yield path, "enum", name
        for i, v in enumerate(e.value):
            yield path + (ENUM_VALUE, i), "enum value", f"{name}.{v.name}"

    def message(m, path, scope):
        name = f"{scope}.{m.name}"
        if m.options.map_entry:
            return  # synthesised for map<K, V>; the map field carries the comment
        yield path, "message", name
        for i, f in enumerate(m.field):
            yield path + (MESSAGE_FIELD, i), "field", f"{name}.{f.name}"
        for i, o in enumerate(m.oneof_decl):
            if not o.name.startswith("_"):  # proto3 `optional` makes a synthetic oneof
                yield path + (MESSAGE_ONEOF, i), "oneof", f"{name}.{o.name}"
        for i, n in enumerate(m.nested_type):
            yield from message(n, path + (MESSAGE_NESTED, i), name)
        for i, e in enumerate(m.enum_type):
            yield from enum(e, path + (MESSAGE_ENUM, i), name)

    for i, m in enumerate(fd.message_type):
        yield from message(m, (FILE_MESSAGE, i), pkg)
    for i, e in enumerate(fd.enum_type):
        yield from enum(e, (FILE_ENUM, i), pkg)
    for i, s in enumerate(fd.service):
        name = f"{pkg}.{s.name}"
        yield (FILE_SERVICE, i), "service", name
        for j, r in enumerate(s.method):
            yield (FILE_SERVICE, i, SERVICE_METHOD, j), "rpc", f"{name}.{r.name}"
    # Custom options (the event catalogue's) are contract too.
    for i, x in enumerate(fd.extension):
        yield (FILE_EXTENSION, i), "extension", f"{pkg}.{x.name}"


def main(image_path):
    fds = descriptor_pb2.FileDescriptorSet()
    with open(image_path, "rb") as f:
        fds.ParseFromString(f.read())
    missing, checked = [], 0
    for fd in fds.file:
        if not fd.name.startswith("concierge/"):
            continue
        if not fd.HasField("source_code_info"):
            sys.exit(f"{fd.name}: the image has no source info; build it without --exclude-source-info")
        locations = {tuple(loc.path): loc for loc in fd.source_code_info.location}
        for path, kind, name in elements(fd):
            checked += 1
            loc = locations.get(path)
            line = loc.span[0] + 1 if loc is not None else 0
            where = f"proto/{fd.name}:{line}: {kind} {name}"
            if loc is None or not loc.leading_comments.strip():
                missing.append(f"{where} has no leading comment")
            if loc is not None and loc.trailing_comments.strip():
                missing.append(
                    f"{where} has a trailing comment {loc.trailing_comments.strip()!r}:"
                    " put it on its own line above the element it documents"
                )
    if checked == 0:
        sys.exit("no concierge/ files in the image: wrong image?")
    for m in missing:
        print(m, file=sys.stderr)
    if missing:
        sys.exit(f"{len(missing)} comment faults among {checked} proto elements")
    print(f"proto comments: all {checked} services, RPCs, messages, fields, enums, values and extensions documented")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
