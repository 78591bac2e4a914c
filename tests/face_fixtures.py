"""Real photographs that ship inside installed packages, altered copies, MP4s, and tiny insightface-shaped models.

- scikit-image's astronaut(): astronaut Eileen Collins, a real public figure.
- insightface's data/images/t1.jpg: a group photo of six people who are not her.
- build_scrfd_like / build_arcface_like: ONNX graphs with the input/output shapes insightface's
  model router expects (SCRFD: 9 outputs over strides 8/16/32; ArcFace: 112x112 -> 512), built
  here so no weights are downloaded. The "detector" fires on bright 32x32 cells of the stride-32 grid.
"""

from __future__ import annotations

import io
from pathlib import Path

import insightface
import numpy as np
from PIL import Image, ImageEnhance
from skimage import data


def astronaut() -> np.ndarray:
    return data.astronaut()


def group_photo() -> np.ndarray:
    path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


def altered_copies(rgb: np.ndarray) -> dict[str, np.ndarray]:
    image = Image.fromarray(rgb)
    width, height = image.size
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", quality=30)
    return {
        "flip": np.asarray(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
        "crop": np.asarray(image.crop((100, 20, 340, 260))),
        "rescale": np.asarray(image.resize((int(width * 0.6), int(height * 0.6)))),
        "jpeg30": np.asarray(Image.open(io.BytesIO(jpeg.getvalue())).convert("RGB")),
        "brighter": np.asarray(ImageEnhance.Brightness(image).enhance(1.3)),
    }


def small_astronaut(scale: float = 0.5, size: tuple[int, int] = (704, 480)) -> np.ndarray:
    """The astronaut photo shrunk (at 0.5 her face is ~43 px across) on a grey video-sized frame."""
    side = int(512 * scale)
    frame = np.full((size[1], size[0], 3), 128, dtype=np.uint8)
    frame[100:100 + side, 200:200 + side] = np.asarray(Image.fromarray(astronaut()).resize((side, side), Image.BILINEAR))
    return frame


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


def mp4_bytes(frames: list[np.ndarray], fps: int = 8) -> bytes:
    """Encode RGB frames (same size, even sides) as H.264 MP4 with PyAV."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def even(rgb: np.ndarray) -> np.ndarray:
    return rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]


def build_scrfd_like(path: Path, size: int = 640) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, outputs = [], [], []
    scores, boxes, points = [], [], []
    for stride in (8, 16, 32):
        cells = size // stride
        live = stride == 32
        pool = f"pool{stride}"
        nodes.append(helper.make_node("AveragePool", ["input.1"], [pool], kernel_shape=[stride, stride],
                                      strides=[stride, stride]))
        # score = sigmoid(10 * mean(normalised RGB) - 2): bright cells ~1, dark cells ~0 (only at stride 32)
        weight = np.full((2, 3, 1, 1), 10.0 / 3 if live else 0.0, dtype=np.float32)
        bias = np.full((2,), -2.0 if live else -20.0, dtype=np.float32)
        box_bias = np.full((8,), 1.5, dtype=np.float32)  # 1.5 strides each side of the anchor centre
        kps = np.array([-0.5, -0.4, 0.5, -0.4, 0.0, 0.0, -0.4, 0.5, 0.4, 0.5], dtype=np.float32) * 1.5
        kps_bias = np.concatenate([kps, kps])
        for name, w, b, channels, per_anchor, target in [
            ("score", weight, bias, 2, 1, scores), ("bbox", np.zeros((8, 3, 1, 1), np.float32), box_bias, 8, 4, boxes),
            ("kps", np.zeros((20, 3, 1, 1), np.float32), kps_bias, 20, 10, points),
        ]:
            inits += [numpy_helper.from_array(w, f"{name}{stride}_w"), numpy_helper.from_array(b, f"{name}{stride}_b")]
            conv, nhwc, out = f"{name}{stride}_conv", f"{name}{stride}_nhwc", f"{name}_{stride}"
            nodes.append(helper.make_node("Conv", [pool, f"{name}{stride}_w", f"{name}{stride}_b"], [conv]))
            source = conv
            if name == "score":
                nodes.append(helper.make_node("Sigmoid", [conv], [f"{conv}_sig"]))
                source = f"{conv}_sig"
            nodes.append(helper.make_node("Transpose", [source], [nhwc], perm=[0, 2, 3, 1]))
            shape = numpy_helper.from_array(np.array([-1, per_anchor], dtype=np.int64), f"{name}{stride}_shape")
            inits.append(shape)
            nodes.append(helper.make_node("Reshape", [nhwc, f"{name}{stride}_shape"], [out]))
            target.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [cells * cells * 2, per_anchor]))
    outputs = scores + boxes + points
    graph = helper.make_graph(nodes, "scrfd_like",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def build_arcface_like(path: Path, seed: int = 7) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((3 * 14 * 14, 512)).astype(np.float32)
    nodes = [  # pooled pixels, centred (so the background does not dominate), randomly projected
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("ReduceMean", ["flat"], ["level"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["flat", "level"], ["centred"]),
        helper.make_node("MatMul", ["centred", "projection"], ["683"]),
    ]
    graph = helper.make_graph(nodes, "arcface_like",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])],
                              [numpy_helper.from_array(projection, "projection")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def bright_square_image(corner: tuple[int, int], size: int = 640, checkered: bool = False) -> np.ndarray:
    """A dark image with one bright 32x32 block on the stride-32 grid: one 'face' for the tiny detector.

    The block is plain white, or a white/grey checkerboard whose embedding differs from the plain one.
    """
    image = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = corner
    block = np.full((32, 32, 3), 255, dtype=np.uint8)
    if checkered:
        yy, xx = np.mgrid[0:32, 0:32]
        block[((yy // 16) + (xx // 16)) % 2 == 1] = 100
    image[top:top + 32, left:left + 32] = block
    return image


def group_portrait(index: int, margin: int = 60) -> np.ndarray:
    """One person's head from the group photo (faces ordered left to right, found with dlib)."""
    from pipeline.likeness.faces import DlibEmbedder

    photo = group_photo()
    boxes = sorted(face.box for face in DlibEmbedder().faces(photo))
    left, top, right, bottom = boxes[index]
    return photo[max(top - margin, 0):bottom + margin, max(left - margin, 0):right + margin].copy()
