"""The TFLite metadata step, run by `.venv-metadata/bin/python` (make metadata-env).

It is a script, not a module of the project: its environment holds the official
metadata writer (tflite-support 0.4.4, which needs protobuf 3, so it cannot
share this project's TensorFlow) and tensorflow-datasets' files (installed
without its dependencies, never imported: the labels are read from its source
text), and nothing of the project. exporters/formats/lite.py runs it:

  labels PACKAGE FILE NAME BACKGROUND COUNT OUT
      writes OUT, the labels file: BACKGROUND, then the names of the list NAME
      assigned in FILE of the installed PACKAGE; COUNT lines or an error.
  write MODEL LABELS MEAN STD OUT
      MODEL with image-classifier metadata (normalization MEAN/STD, RGB image
      input, LABELS packed and associated with the output as axis labels) at OUT;
      prints the writer and its version.
  read MODEL
      prints the metadata of MODEL as JSON: its normalization, the color space,
      the packed files and the lines of the labels file.

An error is one line on stderr and exit status 1.
"""
import ast
import importlib.metadata
import importlib.util
import json
import os
import sys
import time
import zipfile

# The metadata writer packs the labels file into a zip appended to the model and stamps
# it with the wall clock (zipfile.writestr); a fixed clock keeps the bytes reproducible.
_PACKED_AT = time.mktime((1980, 1, 1, 0, 0, 0, 0, 0, -1))


class ToolError(Exception):
  pass


def labels(package: str, file: str, name: str, background: str, count: str, out: str) -> None:
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise ToolError(f"the labels source package {package} is not installed")
  path = os.path.join(spec.submodule_search_locations[0], file)
  try:
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), path)
  except (OSError, SyntaxError, ValueError) as e:
    raise ToolError(f"cannot read the labels source {path}: {e}") from None
  found = [node.value for node in tree.body if isinstance(node, ast.Assign)
           and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)]
  if len(found) != 1:
    raise ToolError(f"the labels source {path} assigns {name} {len(found)} times, not once")
  try:
    names = ast.literal_eval(found[0])
  except ValueError:
    raise ToolError(f"{name} in {path} is not a literal list of names") from None
  if (not isinstance(names, list) or not all(isinstance(n, str) and n and "\n" not in n
                                             for n in names)):
    raise ToolError(f"{name} in {path} is not a list of one-line names")
  lines = [background, *names]
  if len(lines) != int(count):
    raise ToolError(f"the labels source {path} ({name}) gives {len(lines)} labels with "
                    f"{background!r}, not the model's {count} classes")
  with open(out, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


def write(model: str, labels_file: str, mean: str, std: str, out: str) -> None:
  from tflite_support.metadata_writers import image_classifier, writer_utils
  zipfile.time = _FixedClock()
  writer = image_classifier.MetadataWriter.create_for_inference(
      writer_utils.load_file(model), [float(mean)], [float(std)], [labels_file])
  with open(out, "wb") as f:
    f.write(writer.populate())
  print(f"tflite-support {importlib.metadata.version('tflite-support')}")


class _FixedClock:
  """What zipfile reads of the time module: time() is _PACKED_AT."""
  localtime = staticmethod(time.localtime)

  @staticmethod
  def time() -> float:
    return _PACKED_AT


def read(model: str) -> None:
  from tflite_support import metadata
  displayer = metadata.MetadataDisplayer.with_model_file(model)
  found = json.loads(displayer.get_metadata_json())
  [subgraph] = found["subgraph_metadata"]
  [image] = subgraph["input_tensor_metadata"]
  [output] = subgraph["output_tensor_metadata"]
  [normalization] = [u["options"] for u in image.get("process_units", [])
                     if u.get("options_type") == "NormalizationOptions"]
  packed = displayer.get_packed_associated_file_list()
  associated = output.get("associated_files", [])
  label_files = [a["name"] for a in associated if a.get("type") == "TENSOR_AXIS_LABELS"]
  lines = []
  if len(label_files) == 1 and label_files[0] in packed:
    with zipfile.ZipFile(model) as packed_files:
      lines = packed_files.read(label_files[0]).decode("utf-8").splitlines()
  print(json.dumps({"name": found.get("name"), "normalization": normalization,
                    "color_space": image["content"]["content_properties"].get("color_space"),
                    "packed_files": sorted(packed), "label_files": label_files,
                    "labels": lines}))


def main(argv: list[str]) -> int:
  commands = {"labels": (labels, 6), "write": (write, 5), "read": (read, 1)}
  if not argv or argv[0] not in commands or len(argv) - 1 != commands[argv[0]][1]:
    print(f"usage: {', '.join(commands)} with their arguments (see the module's docstring)",
          file=sys.stderr)
    return 2
  command, _ = commands[argv[0]]
  try:
    command(*argv[1:])
  except ToolError as e:
    print(e, file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
