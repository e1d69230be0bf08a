"""Write the example notebooks and execute them, so they are committed with their outputs.

    pip install ".[test]" && python notebooks/make_notebooks.py

The test suite runs them again (pytest --nbmake), so they cannot go stale.
"""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))

NOTEBOOKS = {
    "01_remove_if_from_silero_vad.ipynb": [
        ("md", "# Removing the `If` nodes from silero_vad\n\nsilero_vad ships with 25 nested `If` nodes on its "
               "sample-rate input. onnxruntime's own If-inlining crashes once the rate is fixed, and TensorRT "
               "handles data-dependent control flow poorly. One pipeline removes them all, in a session that can "
               "show and undo each step."),
        ("code", "import numpy as np\nimport graphsurgery as gs\n\nmodel = gs.load('../tests/data/silero_vad.onnx')\n"
                 "model  # the summary, with the deployment lint"),
        ("md", "The lint says what to do: the top-level `If` depends on the *value* of `sr` (freeze it), the "
               "nested ones on the *shapes* of `input` and `state` (fix them). A session keeps every step "
               "undoable and, given inputs, shows how far the outputs moved."),
        ("code", "rng = np.random.default_rng(0)\ninputs = {'input': rng.uniform(-1, 1, (1, 512)).astype(np.float32),\n"
                 "          'state': np.zeros((2, 1, 128), np.float32), 'sr': np.array(16000, np.int64)}\n"
                 "session = gs.Session(model, inputs=inputs)\n"
                 "session.apply('freeze-inputs(sr=16000),set-shape(input=1x512,state=2x1x128)')"),
        ("code", "change = session.apply('fold-constants,remove-if,cleanup')\nchange"),
        ("code", "print(len(model.find_nodes('If')), 'If nodes left;', len(model.graph), 'nodes')\n"
                 "model.graph.neighbourhood(model.find_nodes('LSTM')[0], hops=1)"),
        ("md", "Check it the way it will be deployed: onnxruntime with optimizations on, streaming chunks and "
               "feeding the state back, against the original."),
        ("code", "from graphsurgery import verify\n\noriginal = open('../tests/data/silero_vad.onnx', 'rb').read()\n"
                 "repaired = model.to_bytes()\nstate_a = state_b = np.zeros((2, 1, 128), np.float32)\nworst = 0.0\n"
                 "for _ in range(5):\n    x = rng.uniform(-1, 1, (1, 512)).astype(np.float32)\n"
                 "    a = verify.run(original, {'input': x, 'state': state_a, 'sr': np.array(16000, np.int64)}, "
                 "optimize=False)\n    b = verify.run(repaired, {'input': x, 'state': state_b})\n"
                 "    worst = max(worst, float(np.max(np.abs(a['output'] - b['output']))))\n"
                 "    state_a, state_b = a['stateN'], b['stateN']\nprint(f'largest difference in output: {worst:.2e}')"),
        ("code", "session.undo()  # back to before the folding step\nprint(len(model.find_nodes('If')), 'If nodes')"),
    ],
    "02_prepare_for_tensorrt.ipynb": [
        ("md", "# Preparing PyTorch exports for TensorRT\n\nTwo networks exported from PyTorch (see "
               "`tests/fixtures/make_torch_models.py`): an ArcFace-style face embedder with PReLU, and a "
               "fast-neural-style network with InstanceNorm. Each repair is checked against PyTorch's own outputs, "
               "saved beside the models."),
        ("code", "import numpy as np\nimport graphsurgery as gs\nfrom graphsurgery import verify\n"
                 "from graphsurgery.passes import Pipeline\n\nref = dict(np.load('../tests/fixtures/arcface_prelu.npz'))\n"
                 "arc = gs.load('../tests/fixtures/arcface_prelu.onnx')\n"
                 "# store the slopes as [C], as MXNet exports do: onnxruntime then refuses the model\n"
                 "for node in arc.find_nodes('PRelu'):\n"
                 "    name = node.inputs[1]\n"
                 "    arc.graph.set_initializer(name, np.ascontiguousarray(arc.graph.initializer(name).reshape(-1)))\n"
                 "try:\n    verify.run(arc.to_bytes(), {'x': ref['x']})\nexcept verify.RuntimeFailure as e:\n"
                 "    print(str(e)[:160])"),
        ("code", "result = Pipeline.from_text('fix-prelu-slope,prelu-to-relu').run(arc)\nresult"),
        ("code", "out = verify.run(arc.to_bytes(), {'x': ref['x']})['embedding']\n"
                 "print('max difference from PyTorch:', float(np.abs(out - ref['embedding']).max()))"),
        ("md", "## InstanceNorm epsilon\n\nOlder TensorRT ONNX parsers clamp InstanceNormalization epsilon to 1e-4. "
               "Setting it explicitly makes the ONNX model compute what the engine will; here we check the new "
               "value against PyTorch run with the same epsilon."),
        ("code", "style_ref = dict(np.load('../tests/fixtures/fast_style.npz'))\n"
                 "style = gs.load('../tests/fixtures/fast_style.onnx')\n"
                 "r = Pipeline.from_text('instancenorm-epsilon(epsilon=0.001)').run(style)\nr"),
        ("code", "out = verify.run(style.to_bytes(), {'image': style_ref['image']})['stylized']\n"
                 "print('max difference from PyTorch with eps=1e-3:', float(np.abs(out - style_ref['stylized_eps_1e_3']).max()))"),
        ("md", "## A batch of 4\n\nThe ArcFace export hard-codes batch 2 in its input; `set-batch` changes it "
               "and proves the rest of the model follows (or refuses, naming the node)."),
        ("code", "Pipeline.from_text('set-batch(size=N)').run(arc)\nx4 = np.concatenate([ref['x'], ref['x']])\n"
                 "out = verify.run(arc.to_bytes(), {'x': x4})['embedding']\n"
                 "print(out.shape, float(np.abs(out[2:] - ref['embedding']).max()))"),
    ],
    "03_find_the_first_layer_that_differs.ipynb": [
        ("md", "# Which layer differs from PyTorch?\n\nThe ArcFace-style export, with one weight perturbed by 1% "
               "after export. `compare` runs the model with every tensor exposed and lines it up with PyTorch's "
               "activations (recorded with forward hooks and saved beside the model)."),
        ("code", "import numpy as np\nimport graphsurgery as gs\nfrom graphsurgery.debug import compare, extract_reproducer\n"
                 "from graphsurgery.debug.torch_map import map_activations\n\n"
                 "model = gs.load('../tests/fixtures/arcface_prelu.onnx')\n"
                 "x = dict(np.load('../tests/fixtures/arcface_prelu.npz'))['x']\n"
                 "acts = dict(np.load('../tests/fixtures/arcface_prelu_activations.npz'))\n"
                 "conv = model.find_nodes('Conv')[2]\n"
                 "model.graph.set_initializer(conv.inputs[1], model.graph.initializer(conv.inputs[1]) * 1.01)\n"
                 "reference = map_activations(model, acts)\nlen(reference), 'tensors matched to PyTorch modules'"),
        ("code", "report = compare(model, reference, {'x': x})\nreport"),
        ("md", "The culprit is the node whose outputs are off while its inputs still agree: the first place the "
               "two runs part. A reproducer holds just that node and the inputs it saw, for a bug report."),
        ("code", "import tempfile, os\nfolder = tempfile.mkdtemp()\n"
                 "rep = extract_reproducer(model, report.culprit, {'x': x}, folder)\n"
                 "sorted(os.listdir(folder)), report.culprit"),
    ],
}


def build(name: str, cells) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": HERE}}).execute()
    path = os.path.join(HERE, name)
    nbformat.write(nb, path)
    print("wrote", path)


if __name__ == "__main__":
    for name, cells in NOTEBOOKS.items():
        build(name, cells)
