"""The weather example: the WeatherBench-layout loader on generated files, WeatherBench's score,
the ResNet's placements of SMoE layers, shared gates and periodic longitude, and short runs of
the training script (one process and DDP) and of the whole-network benchmark."""
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
import xarray as xr

import smoe
from commands import run

SOURCE = pathlib.Path(os.environ["SMOE_SOURCE_DIR"])
sys.path.insert(0, str(SOURCE / "examples" / "weather"))
import weatherbench  # noqa: E402


class Archive(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = pathlib.Path(cls.tmp.name)
        cls.land = weatherbench.write_synthetic_archive(cls.root, (2000, 2001), step_hours=24)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_files_follow_the_weatherbench_layout(self):
        self.assertEqual(sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*.nc")), [
            "constants/constants_5.625deg.nc",
            "geopotential_500/geopotential_500hPa_2000_5.625deg.nc",
            "geopotential_500/geopotential_500hPa_2001_5.625deg.nc",
            "temperature_850/temperature_850hPa_2000_5.625deg.nc",
            "temperature_850/temperature_850hPa_2001_5.625deg.nc"])
        with xr.open_dataset(self.root / "temperature_850" / "temperature_850hPa_2001_5.625deg.nc") as ds:
            self.assertEqual(ds["t"].dims, ("time", "lat", "lon"))
            self.assertEqual(ds["t"].shape, (365, 32, 64))
            self.assertEqual(float(ds["level"]), 850)
            np.testing.assert_allclose(ds["lat"].values[[0, -1]], [-87.1875, 87.1875])
            np.testing.assert_allclose(ds["lon"].values[[0, -1]], [0, 354.375])

    def test_loader_normalises_by_the_training_years_and_pairs_by_lead(self):
        data = weatherbench.WeatherBenchData(self.root, lead_hours=48, step_hours=24, train_years=(2000, 2000),
                                             valid_years=(2001, 2001), test_years=(2001, 2001))
        x, y = data.pairs("train")
        self.assertEqual(tuple(x.shape), (366 - 2, 2, 32, 64))
        torch.testing.assert_close(x[2:], y[:-2])  # y is x two steps later
        train = data.fields[torch.from_numpy(data.splits["train"])]
        torch.testing.assert_close(train.mean((0, 2, 3)), torch.zeros(2), atol=1e-4, rtol=0)
        torch.testing.assert_close(train.std((0, 2, 3)), torch.ones(2), atol=1e-3, rtol=0)
        raw = weatherbench.open_variable(self.root, "z500").sel(time=slice("2000", "2000")).values
        self.assertAlmostEqual(float(data.mean[0, 0, 0, 0]), float(raw.mean()), delta=1e-3 * abs(raw.mean()))
        torch.testing.assert_close(data.denormalise(data.fields[:1])[0, 0].double(),
                                   torch.from_numpy(raw[0]).double(), rtol=1e-5, atol=1e-2)

    def test_loader_reads_a_level_dimension_and_descending_latitudes(self):
        with tempfile.TemporaryDirectory() as tmp:
            lat, lon = weatherbench.grid()
            values = np.random.default_rng(0).standard_normal((4, 2, 32, 64)).astype(np.float32)
            da = xr.DataArray(values[:, :, ::-1], dims=("time", "level", "lat", "lon"),
                              coords={"time": np.arange(4).astype("datetime64[D]"), "level": [500, 850],
                                      "lat": lat[::-1], "lon": lon}, name="z")
            os.makedirs(f"{tmp}/geopotential_500")
            da.to_dataset().to_netcdf(f"{tmp}/geopotential_500/geopotential_500hPa_1970_5.625deg.nc")
            z = weatherbench.open_variable(tmp, "z500")
            self.assertEqual(z.dims, ("time", "lat", "lon"))
            np.testing.assert_array_equal(z["lat"].values, lat)
            np.testing.assert_array_equal(z.values, values[:, 0])

    def test_land_sea_mask_is_read_from_the_constants_file(self):
        np.testing.assert_array_equal(weatherbench.open_land_sea_mask(self.root), self.land)
        self.assertGreater(self.land.mean(), 0.2)
        self.assertLess(self.land.mean(), 0.5)
        with self.assertRaisesRegex(FileNotFoundError, "constants_5.625deg.nc is missing"):
            weatherbench.open_land_sea_mask(self.root / "nowhere")

    def test_synthetic_dynamics_turn_the_fields_by_place(self):
        """Z500 anomalies alone become T850 anomalies of one sign over land and the other over sea,
        and a step keeps the size of the fields but for the 1% loss."""
        land = self.land
        fields = np.stack([np.ones(land.shape), np.zeros(land.shape)])
        turned = weatherbench.step(fields, land)
        turn = np.sin(weatherbench.TURN) * 0.99
        np.testing.assert_allclose(turned[1], np.where(land == 1, turn, -turn), atol=1e-12)
        np.testing.assert_allclose(np.hypot(turned[0], turned[1]), 0.99, atol=1e-12)
        with self.assertRaisesRegex(ValueError, "multiple of 6"):
            weatherbench.synthetic_fields(48, step_hours=9)

    def test_missing_archive_is_a_clear_error(self):
        with self.assertRaisesRegex(FileNotFoundError, "geopotential_500/\\*.nc"):
            weatherbench.open_variable(self.root / "nowhere", "z500")

    def test_lat_weighted_rmse_is_weatherbenchs(self):
        rng = np.random.default_rng(1)
        forecast, truth = rng.standard_normal((2, 5, 32, 64))
        lat = weatherbench.grid()[0]
        weights = np.cos(np.deg2rad(lat)) / np.cos(np.deg2rad(lat)).mean()
        expected = np.sqrt(((forecast - truth) ** 2 * weights.reshape(1, -1, 1)).mean())
        self.assertAlmostEqual(weatherbench.lat_weighted_rmse(torch.from_numpy(forecast), torch.from_numpy(truth), lat),
                               expected, places=12)


class Network(unittest.TestCase):
    def test_placements_share_one_gate(self):
        x = torch.randn(2, 3, 8, 16)
        counts = {}
        for place in smoe.WeatherResNet.PLACES:
            model = smoe.WeatherResNet(3, 2, 8, 16, filters=4, blocks=2, smoe=place)
            self.assertEqual(tuple(model(x).shape), (2, 2, 8, 16))
            layers = model.smoe_layers()
            counts[place] = len(layers)
            self.assertEqual(len({id(layer.gate) for layer in layers}), 1 if layers else 0)
            if layers:
                self.assertEqual(layers[0].gate.experts, 8)
                self.assertEqual(layers[0].gate.selected, 4)
        self.assertEqual(counts, {None: 0, "first": 1, "last": 1, "all": 4})
        with self.assertRaisesRegex(ValueError, "smoe must be one of"):
            smoe.WeatherResNet(3, 2, 8, 16, smoe="middle")

    def test_gradients_reach_the_shared_gate_and_every_layer(self):
        model = smoe.WeatherResNet(2, 2, 8, 16, filters=4, blocks=1, smoe="all")
        model(torch.randn(4, 2, 8, 16)).square().mean().backward()
        gate = next(iter(model.gates.values()))
        self.assertGreater(float(gate.routing.grad.abs().sum()), 0)
        for layer in model.smoe_layers():
            self.assertGreater(float(layer.weight.grad.abs().sum()), 0)

    def test_periodic_longitude(self):
        """Rolling the input (and the routing) along longitude rolls the output: no edge there."""
        torch.manual_seed(0)
        for place in (None, "all"):
            model = smoe.WeatherResNet(2, 2, 6, 12, filters=4, blocks=1, smoe=place, dropout=0.0).eval()
            x = torch.randn(2, 2, 6, 12)
            y = model(x)
            with torch.no_grad():
                for gate in model.gates.values():
                    gate.routing.copy_(gate.routing.roll(5, -1))
            torch.testing.assert_close(model(x.roll(5, -1)), y.roll(5, -1), atol=1e-5, rtol=1e-5)

    def test_class_map_prior(self):
        model = smoe.WeatherResNet(2, 2, 4, 8, filters=2, blocks=1, smoe="last")
        land = (torch.arange(32).view(4, 8) % 3 == 0).long()
        model.init_gates_from_class_map(land, 2)
        gate = next(iter(model.gates.values()))
        chosen = gate.routing.topk(2, dim=0).indices
        torch.testing.assert_close((chosen >= 2).all(0).long(), land)


class Scripts(unittest.TestCase):
    def train(self, *extra):
        with tempfile.TemporaryDirectory() as out:
            return run([sys.executable, SOURCE / "examples" / "weather" / "train.py", "--epochs", "1", "--blocks", "1",
                        "--filters", "4", "--train-years", "2000", "--test-years", "2001", "--step-hours", "24",
                        "--lead-hours", "48", "--batch", "8", "--out", out, *extra])

    def test_demo_trains_and_reports_the_table(self):
        output = self.train("--configs", "none,first")
        self.assertIn("| configuration | parameters | Z500 RMSE (m²/s²) | T850 RMSE (K) | s / epoch |", output)
        for row in ("| persistence |", "| climatology |", "| plain (", "| SMoE first (4 filters) |"):
            self.assertIn(row, output)
        self.assertIn("routing agrees with the land-sea map", output)

    def test_prior_needs_the_land_sea_mask(self):
        with tempfile.TemporaryDirectory() as root:
            weatherbench.write_synthetic_archive(root, (2000, 2001), step_hours=24)
            os.remove(os.path.join(root, weatherbench.CONSTANTS))
            args = [sys.executable, SOURCE / "examples" / "weather" / "train.py", "--data-dir", root, "--epochs", "1",
                    "--blocks", "1", "--filters", "4", "--train-years", "2000", "--test-years", "2001",
                    "--step-hours", "24", "--lead-hours", "48", "--batch", "8", "--configs", "last", "--out", root]
            result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600)
            self.assertNotEqual(result.returncode, 0)
            self.assertIn("--prior: no land-sea mask", result.stderr)
            self.assertIn("pass --no-prior", result.stderr)
            output = run(args + ["--no-prior"])
            self.assertIn("| SMoE last (4 filters) |", output)
            self.assertNotIn("routing agrees", output)

    def test_ddp(self):
        output = self.train("--configs", "all", "--processes", "2", "--threads", "1")
        self.assertIn("over 2 DDP processes", output)
        self.assertIn("| SMoE all (4 filters) |", output)

    def test_whole_network_benchmark(self):
        output = run([sys.executable, SOURCE / "bench" / "network.py", "--blocks", "1", "--steps", "1", "--batch", "2"])
        for method in ("smoe", "naive", "plain128", "plain256"):
            self.assertIn(f"| {method} |", output)


if __name__ == "__main__":
    unittest.main()
