"""Writes the state_dict key lists that `selfsup export --format torchvision` must match
(tests/fixtures/*.keys): torchvision's ResNet-18 and ResNet-50 with `fc = nn.Identity()`, and
the ConvNet of src/export/convnet.py. One line per tensor: name, shape, dtype. Run once with
torchvision installed (the fixtures are committed; the tests need no PyTorch):

    python3 benches/torchvision_keys.py
"""

import importlib.util
import pathlib

import torch
import torchvision

ROOT = pathlib.Path(__file__).resolve().parent.parent


def dump(model: torch.nn.Module, name: str) -> None:
    lines = [
        f"{key} {list(t.shape)} {str(t.dtype).removeprefix('torch.')}".replace(" ", "\t", 1)
        for key, t in model.state_dict().items()
    ]
    path = ROOT / "tests" / "fixtures" / f"{name}.keys"
    path.write_text(f"# {name}: torch {torch.__version__}, torchvision {torchvision.__version__}\n" + "\n".join(lines) + "\n")
    print(f"wrote {path} ({len(lines)} tensors)")


for arch in ("resnet18", "resnet50"):
    m = getattr(torchvision.models, arch)()
    m.fc = torch.nn.Identity()
    dump(m, f"torchvision-{arch}")

spec = importlib.util.spec_from_file_location("convnet", ROOT / "src" / "export" / "convnet.py")
convnet = importlib.util.module_from_spec(spec)
spec.loader.exec_module(convnet)
dump(convnet.ConvNet(), "convnet-py")
