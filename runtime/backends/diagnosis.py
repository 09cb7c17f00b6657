"""What a model file really holds, to explain a load that failed.

Frameworks report a file of the wrong format in their own words, none naming the file or
what to do: h5py says "file signature not found", onnxruntime "Protobuf parsing failed",
PMML4S "MalformedInputException" or "Not a valid PMML". ``load_failure`` turns a failed
``backend.load(artefact)`` into one message that starts with the file: when its first bytes
show another format (an HDF5 file, a Keras or PyTorch zip archive, a PMML or XML document)
or no bytes at all, it says so and how to serve it; a PMML file that is not well-formed XML
gets the line and column of the first error. The framework's own message follows in parentheses.

A backend that recognises its framework's own refusal says it in a line itself, raising
``LoadDiagnosis`` (onnxruntime's C++ text for an opset it does not have becomes "ONNX opset
99 is not supported by onnxruntime 1.20.1 (highest 21)"), and ``load_failure`` puts the file
in front of it.

Only a load that failed is diagnosed, so a file its framework accepts is never refused on a
guess. The exception is PMML: PMML4S loads a document cut short (a copy in progress, a
mistyped closing tag) as a model with fewer fields, so the PMML backend checks every file
with ``diagnose`` before loading it. ``runtime.model_version`` (repository versions) and
``runtime.pipeline`` (model steps) both report load failures through this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"
#: What a zip archive's first entries are named (in its first bytes) when Keras 3 wrote it,
#: and when PyTorch did (``torch.save``, ``torch.jit.save``: ``<name>/data.pkl``).
_KERAS_ZIP_ENTRIES = (b"metadata.json", b"config.json", b"model.weights.h5")
_PYTORCH_ZIP_ENTRY = b"data.pkl"
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"
_SNIFF_BYTES = 1024

#: What each format's artefact is called in messages.
EXPECTED = {
    "onnx": "an ONNX model",
    "keras": "a Keras model file",
    "pmml": "a PMML document",
}


class LoadDiagnosis(ValueError):
    """A failed load its backend put in words: what is wrong and what to do, then the
    framework's own message in parentheses; not the file, which the caller names."""


class OptionLoadError(LoadDiagnosis):
    """A load that failed on the value of backend option ``option`` (a SavedModel
    ``signature`` the folder does not have). The caller adds where the user sets it, which
    only the caller knows: the model's config.yaml (``runtime.model_version``), or a
    pipeline model step's ``options:`` (``runtime.pipeline``)."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class Content:
    """What a file's first bytes show, and the file name suffix that serves it."""

    what: str
    format: str | None = None
    suffix: str | None = None


EMPTY = Content("empty (0 bytes)")
LFS_POINTER = Content("a Git LFS pointer, not the model itself: fetch it with `git lfs pull`")
PYTORCH = Content(
    "a PyTorch file (torch.save), which the runtime does not serve: export the model to ONNX "
    "(torch.onnx.export) and serve the .onnx file"
)


def sniff(path: Path) -> Content | None:
    """The kind of ``path`` when its first bytes tell it; ``None`` when they do not."""
    with path.open("rb") as file:
        head = file.read(_SNIFF_BYTES)
    if not head:
        return EMPTY
    if head.startswith(_HDF5_SIGNATURE):
        return Content("an HDF5 file, as Keras writes `.h5` models", "keras", ".h5")
    if head.startswith(_ZIP_SIGNATURE):
        if any(entry in head for entry in _KERAS_ZIP_ENTRIES):
            return Content("a zip archive, as Keras 3 writes `.keras` models", "keras", ".keras")
        if _PYTORCH_ZIP_ENTRY in head:
            return PYTORCH
        return Content("a zip archive that Keras 3 did not write (unzip it if it holds the model)")
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        if b"<PMML" in head:
            return Content("a PMML document", "pmml", ".pmml")
        return Content("an XML document")
    if head.startswith(_LFS_POINTER):
        return LFS_POINTER
    if _is_text(head):
        return Content("a text file")
    return None


def _is_text(head: bytes) -> bool:
    """UTF-8 without control characters: what no binary model format starts with (an ONNX
    protobuf starts with a field tag such as 0x08)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # perhaps cut inside a character: try without the tail
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(char.isprintable() or char in "\t\r\n" for char in text)


def load_failure(fmt: str, artefact: Path, exc: BaseException) -> str:
    """The message of a failed load of ``artefact`` as ``fmt``, starting with the file."""
    if isinstance(exc, LoadDiagnosis):
        return f"{artefact}: {exc}"
    loader = f"{type(exc).__name__}: {exc}"
    diagnosis = diagnose(fmt, artefact)
    if diagnosis is not None and diagnosis in str(exc):  # the backend checked it itself
        return str(exc)
    if diagnosis is not None:
        return f"{artefact} {diagnosis} ({loader})"
    if str(artefact) in loader:
        return loader
    return f"{artefact}: {loader}"


def diagnose(fmt: str, artefact: Path) -> str | None:
    """What is wrong with ``artefact`` as ``fmt`` (``"is not ..."``), when its content tells."""
    if not artefact.is_file():
        return None
    try:
        found = sniff(artefact)
    except OSError:
        return None
    if found == EMPTY:
        return (
            "is empty (0 bytes): was it copied completely? Copy a version in under a hidden "
            "name and rename it into place"
        )
    if found in (LFS_POINTER, PYTORCH):
        return f"is {found.what}"
    expected = EXPECTED.get(fmt)
    if expected is None:
        return None
    if found is None or found.format is None or found.format == fmt == "pmml":
        if fmt == "pmml":  # text or not, the XML parser says where it goes wrong
            return _xml_error(artefact)
        if found is not None:
            return f"is not {expected}: it is {found.what}"
        if fmt == "keras" and artefact.suffix.lower() in (".h5", ".hdf5"):
            return "is not an HDF5 file: it does not start with the HDF5 signature"
        return None
    rename = f"rename it to {artefact.stem}{found.suffix}"
    if found.format != fmt:
        return f"is not {expected}: it is {found.what}; {rename} to serve it as {found.format}"
    named = ".h5" if artefact.suffix.lower() == ".hdf5" else artefact.suffix.lower()
    if named != found.suffix:
        ending = f"ends in {artefact.suffix}" if artefact.suffix else "has no suffix"
        return f"is {found.what}, but its name {ending}: {rename}"
    return None


def _xml_error(artefact: Path) -> str | None:
    """Where ``artefact`` stops being well-formed XML; ``None`` when it is well-formed.

    expat reads the file as a stream and builds no tree: a 100 MB forest costs about a
    second, and PMML4S, which loads a truncated document, never sees one."""
    parser = expat.ParserCreate()
    try:
        with artefact.open("rb") as file:
            parser.ParseFile(file)
    except expat.ExpatError as exc:
        reason = f"{expat.ErrorString(exc.code)}: line {exc.lineno}, column {exc.offset}"
        return f"is not well-formed XML, so not a PMML document: {reason}"
    except OSError:
        return None
    return None
