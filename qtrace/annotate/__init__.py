"""Annotation: stack frames -> QEMU layers and explanations; accesses -> registers.

What this stage knows of QEMU is in ``rules/layers.toml`` (frames); what it knows of a
device comes from the device's pack (:mod:`qtrace.devices`: register map, frame rules).
Source text comes through a :class:`SourceProvider` (a local tree, or a capture's
``source-snippets.json``).
"""

from qtrace.annotate.layers import (
    UNKNOWN_LAYER,
    AnnotatedFrame,
    AnnotatedStack,
    Layer,
    LayerRule,
    RuleSet,
    annotate_stack,
    default_rules,
    load_rules,
)
from qtrace.annotate.links import qemu_tag, source_url
from qtrace.annotate.registers import decode_access
from qtrace.devices import Decoded, FieldValue
from qtrace.annotate.source import (
    SNIPPETS_FILE,
    DirectorySourceProvider,
    SourceProvider,
    SourceSnippets,
    build_snippets,
    capture_source,
    write_source_snippets,
)

__all__ = [
    "UNKNOWN_LAYER",
    "AnnotatedFrame",
    "AnnotatedStack",
    "Layer",
    "LayerRule",
    "RuleSet",
    "annotate_stack",
    "default_rules",
    "load_rules",
    "qemu_tag",
    "source_url",
    "Decoded",
    "FieldValue",
    "decode_access",
    "SNIPPETS_FILE",
    "DirectorySourceProvider",
    "SourceProvider",
    "SourceSnippets",
    "build_snippets",
    "capture_source",
    "write_source_snippets",
]
