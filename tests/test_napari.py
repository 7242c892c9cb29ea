"""The napari reader: a run folder opens as image + keypoints + latent maps (headless)."""

import numpy as np
import pytest

from scalevae.napari import get_reader, run_layers
from scalevae.testing import make_fake_result

napari = pytest.importorskip("napari", reason="napari is optional: pip install scalevae[napari]")


@pytest.fixture
def folder(tmp_path):
    ds = make_fake_result(windows=[8, 12, 16], grid=(4, 5))
    ds.to_netcdf(tmp_path / "result.nc", engine="h5netcdf")
    np.save(tmp_path / "input.npy", np.zeros((1, 64, 64), np.float32))
    return tmp_path, ds


def _add(viewer, layers):
    for data, kwargs, kind in layers:
        getattr(viewer, f"add_{kind}")(data, **kwargs)


def test_run_folder_opens_as_image_points_and_latent_maps(folder):
    from napari.components import ViewerModel

    path, ds = folder
    reader = get_reader(str(path))
    assert reader is not None and get_reader(str(path / "input.npy")) is None
    viewer = ViewerModel()
    _add(viewer, reader(str(path)))
    names = [layer.name for layer in viewer.layers]
    assert names == ["input", "keypoints", "z1 (final)", "z2 (final)", "angle (final)"]
    # the input stack is mapped, not read into memory (stacks larger than memory open)
    assert isinstance(reader(str(path))[0][0], np.memmap)
    points = viewer.layers["keypoints"]
    # per-window latents as features, one row per keypoint
    np.testing.assert_allclose(points.features["z1_w12"],
                               ds.z_mean.sel(state="final", window=12, latent="z1"))
    z1 = viewer.layers["z1 (final)"]
    assert z1.data.shape == (3, 1, 4, 5)  # (window, frame, grid y, grid x): window is a slider
    assert viewer.dims.ndim == 4
    # the map pixel of a keypoint holds that keypoint's value, placed over it in image px
    first = ds.isel(point=0)
    np.testing.assert_allclose(z1.data[1, 0, 0, 0], first.z_mean.sel(state="final", window=12,
                                                                     latent="z1"))
    np.testing.assert_allclose(z1.translate[-2:], [float(first.y), float(first.x)])


def test_scattered_keypoints_give_points_per_window(tmp_path):
    from napari.components import ViewerModel

    make_fake_result(windows=[8, 12], scattered=True).to_netcdf(tmp_path / "result.nc",
                                                                engine="h5netcdf")
    viewer = ViewerModel()
    _add(viewer, run_layers(tmp_path, state="instant"))
    layer = viewer.layers["z1 (instant)"]
    assert layer.data.shape[1] == 4 and set(layer.data[:, 0]) == {0, 1}


def test_the_manifest_registers_the_reader(folder):
    npe2 = pytest.importorskip("npe2")
    from importlib.resources import files

    manifest = npe2.PluginManifest.from_file(files("scalevae.napari") / "napari.yaml")
    assert manifest.name == "scalevae"
    assert manifest.contributions.readers[0].command == "scalevae.get_reader"
