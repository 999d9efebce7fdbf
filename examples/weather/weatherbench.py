"""WeatherBench data for the weather example (README "The weather network").

The 5.625-degree archive (32 latitudes x 64 longitudes) keeps one directory per variable and one
NetCDF file per year, e.g. ``geopotential_500/geopotential_500hPa_1979_5.625deg.nc`` holding
``z`` (geopotential at 500 hPa, m^2/s^2) and ``temperature_850/temperature_850hPa_1979_5.625deg.nc``
holding ``t`` (temperature at 850 hPa, K), each with dims (time, lat, lon), hourly. This module
reads that layout with xarray, normalises by the training period's mean and standard deviation
per variable, pairs each time with the one ``lead_hours`` later, and scores forecasts with
WeatherBench's latitude-weighted RMSE.

It also reads the archive's land-sea mask (``constants/constants_5.625deg.nc``, variable ``lsm``)
and writes a synthetic archive in exactly that layout, for the runnable demo and the tests: on the
same grid the Z500 and T850 anomalies turn into each other one way over land and the other way over
sea, and a land-sea map says which.
"""
import glob
import os

import numpy as np
import torch
import xarray as xr

# name: (directory, variable in the files, level in hPa)
VARIABLES = {"z500": ("geopotential_500", "z", 500), "t850": ("temperature_850", "t", 850)}
CONSTANTS = os.path.join("constants", "constants_5.625deg.nc")


def open_variable(root, name, years=None):
    """One variable of the archive as a DataArray (time, lat, lon), latitudes ascending."""
    directory, variable, level = VARIABLES[name]
    files = sorted(glob.glob(os.path.join(root, directory, "*.nc")))
    if not files:
        raise FileNotFoundError(f"no NetCDF files under {os.path.join(root, directory)} (the WeatherBench "
                                f"5.625deg layout: {directory}/*.nc)")
    arrays = []
    for path in files:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            if variable not in ds:
                raise KeyError(f"{path} holds no variable {variable!r}")
            da = ds[variable]
            if "level" in da.dims:
                da = da.sel(level=level)
            arrays.append(da.drop_vars("level", errors="ignore").load())
    da = xr.concat(arrays, "time").sortby("time").sortby("lat")
    if years is not None:
        first, last = years
        da = da.sel(time=slice(str(first), str(last)))
    return da


def open_land_sea_mask(root):
    """The archive's land-sea mask [lat, lon] (1 where the land fraction ``lsm`` exceeds one half),
    latitudes ascending like ``open_variable``'s fields."""
    path = os.path.join(root, CONSTANTS)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no land-sea mask: {path} is missing (WeatherBench's constants file)")
    with xr.open_dataset(path, engine="netcdf4") as ds:
        if "lsm" not in ds:
            raise KeyError(f"{path} holds no variable 'lsm'")
        lsm = ds["lsm"].sortby("lat").load()
    return (lsm.values > 0.5).astype(np.int64)


def lat_weighted_rmse(forecast, truth, lat):
    """WeatherBench's score: sqrt of the mean over time, latitude and longitude of the squared error
    weighted by cos(latitude) / mean(cos(latitude)). forecast, truth [N, H, W]; lat [H] in degrees."""
    weights = torch.cos(torch.deg2rad(torch.as_tensor(lat, dtype=torch.float64)))
    weights = (weights / weights.mean()).view(1, -1, 1)
    error = (forecast.double() - truth.double()) ** 2
    return float(torch.sqrt((error * weights).mean()))


class WeatherBenchData:
    """Normalised fields [T, V, H, W] of the chosen variables and years, and forecast pairs.

    ``lead_hours`` apart, sampled every ``step_hours``; the mean and standard deviation of each
    variable come from the training years only and normalise every split.
    """

    def __init__(self, root, variables=("z500", "t850"), lead_hours=72, step_hours=6,
                 train_years=(1979, 2015), valid_years=(2016, 2016), test_years=(2017, 2018)):
        if lead_hours % step_hours:
            raise ValueError(f"lead_hours ({lead_hours}) must be a multiple of step_hours ({step_hours})")
        self.variables = list(variables)
        self.lead_steps = lead_hours // step_hours
        arrays = {name: open_variable(root, name) for name in self.variables}
        first = arrays[self.variables[0]]
        self.lat = first["lat"].values
        self.lon = first["lon"].values
        times = first["time"].values
        hours = (times - times[0]) / np.timedelta64(1, "h")
        keep = np.isclose(np.mod(hours, step_hours), 0)
        fields = np.stack([arrays[name].values for name in self.variables], axis=1)[keep].astype(np.float32)
        times = times[keep]
        years = times.astype("datetime64[Y]").astype(int) + 1970

        def split(span):
            return (years >= span[0]) & (years <= span[1])

        train = split(train_years)
        if not train.any():
            raise ValueError(f"no data in the training years {train_years}")
        # Statistics in float64: geopotential is ~5e4 with a spread of ~1e3.
        self.mean = fields[train].mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64).astype(np.float32)
        self.std = fields[train].std(axis=(0, 2, 3), keepdims=True, dtype=np.float64).astype(np.float32)
        self.fields = torch.from_numpy(((fields - self.mean) / self.std).astype(np.float32))
        self.splits = {"train": train, "valid": split(valid_years), "test": split(test_years)}
        self.times = times

    def pairs(self, split):
        """(inputs, targets) [N, V, H, W] of a split: each time and the one lead_hours later (both
        in the split)."""
        inside = self.splits[split]
        start = np.nonzero(inside[:-self.lead_steps] & inside[self.lead_steps:])[0]
        start = torch.from_numpy(start)
        return self.fields[start], self.fields[start + self.lead_steps]

    def denormalise(self, fields):
        return fields * torch.from_numpy(self.std) + torch.from_numpy(self.mean)

    def scores(self, forecast, truth):
        """Latitude-weighted RMSE per variable, in the variables' units."""
        forecast, truth = self.denormalise(forecast), self.denormalise(truth)
        return {name: lat_weighted_rmse(forecast[:, v], truth[:, v], self.lat) for v, name in enumerate(self.variables)}


# --- The synthetic archive ---------------------------------------------------------------------

HEIGHT, WIDTH = 32, 64


def grid():
    """WeatherBench's 5.625-degree latitudes and longitudes."""
    lat = -90 + 5.625 / 2 + 5.625 * np.arange(HEIGHT)
    lon = 5.625 * np.arange(WIDTH)
    return lat, lon


def smooth_noise(rng, shape, passes):
    """Random fields smoothed by `passes` of a periodic-in-longitude 5-point average."""
    field = rng.standard_normal(shape)
    for _ in range(passes):
        padded = np.pad(field, [(0, 0)] * (field.ndim - 2) + [(1, 1), (0, 0)], mode="edge")
        field = (padded[..., :-2, :] + padded[..., 2:, :] + np.roll(field, 1, -1) + np.roll(field, -1, -1) + field) / 5
    return field / field.std(axis=(-2, -1), keepdims=True)


def land_sea_map(seed=0):
    """A synthetic land-sea mask on the grid (1 = land), about a third land in a few continents."""
    rng = np.random.default_rng(seed)
    relief = smooth_noise(rng, (HEIGHT, WIDTH), 12)
    return (relief > np.quantile(relief, 0.66)).astype(np.int64)


def laplacian(fields):
    padded = np.pad(fields, [(0, 0)] * (fields.ndim - 2) + [(1, 1), (0, 0)], mode="edge")
    return padded[..., :-2, :] + padded[..., 2:, :] + np.roll(fields, 1, -1) + np.roll(fields, -1, -1) - 4 * fields


MODEL_HOURS = 6  # the synthetic dynamics' time step
TURN = np.deg2rad(22.5)  # per step, over land; the other way over sea


def step(fields, land):
    """Six hours of the synthetic dynamics for (z500, t850) anomalies [2, H, W]: they mix a little
    with their neighbours, turn into each other by 22.5 degrees (a quarter turn a day), one way over
    land and the other way over sea, and lose 1%. A turn keeps the fields' statistics, so both
    regimes look alike: only the place tells which way the fields will turn, which is what an SMoE
    layer's routing can learn and a plain convolution cannot."""
    mixed = fields + 0.05 * laplacian(fields)
    angle = np.where(land == 1, TURN, -TURN)
    cos, sin = np.cos(angle), np.sin(angle)
    return 0.99 * np.stack([cos * mixed[0] - sin * mixed[1], sin * mixed[0] + cos * mixed[1]])


def synthetic_fields(hours, step_hours=6, seed=0):
    """(z500, t850) [T, H, W] of the synthetic task in physical units, every step_hours (a multiple
    of the dynamics' 6 hours)."""
    if step_hours % MODEL_HOURS:
        raise ValueError(f"step_hours ({step_hours}) must be a multiple of {MODEL_HOURS}")
    rng = np.random.default_rng(seed + 1)
    land = land_sea_map(seed)
    count = len(range(0, hours, step_hours))
    state = smooth_noise(rng, (2, HEIGHT, WIDTH), 4)
    out = np.empty((count, 2, HEIGHT, WIDTH))
    for i in range(count):
        out[i] = state
        for _ in range(step_hours // MODEL_HOURS):
            # New weather enters everywhere at a tenth of the amplitude every 6 hours.
            state = step(state, land) + 0.1 * smooth_noise(rng, (2, HEIGHT, WIDTH), 4)
    z500 = 54000 + 3000 * out[:, 0]
    t850 = 275 + 12 * out[:, 1] - 20 * np.abs(np.sin(np.deg2rad(grid()[0]))).reshape(1, -1, 1)
    return z500.astype(np.float32), t850.astype(np.float32)


def write_synthetic_archive(root, years, step_hours=6, seed=0):
    """Writes the synthetic task as a WeatherBench 5.625deg archive under ``root`` (one NetCDF file
    per variable and year and the constants file with the land-sea mask, the real files' names, dims
    and variables); returns the land-sea map."""
    lat, lon = grid()
    first, last = years
    start = np.datetime64(f"{first}-01-01T00")
    end = np.datetime64(f"{last + 1}-01-01T00")
    hours = int((end - start) / np.timedelta64(1, "h"))
    z500, t850 = synthetic_fields(hours, step_hours, seed)
    time = start + np.arange(0, hours, step_hours).astype("timedelta64[h]")
    for name, values in (("z500", z500), ("t850", t850)):
        directory, variable, level = VARIABLES[name]
        os.makedirs(os.path.join(root, directory), exist_ok=True)
        years_of = time.astype("datetime64[Y]").astype(int) + 1970
        for year in range(first, last + 1):
            inside = years_of == year
            da = xr.DataArray(values[inside], dims=("time", "lat", "lon"),
                              coords={"time": time[inside], "lat": lat, "lon": lon, "level": level}, name=variable)
            path = os.path.join(root, directory, f"{directory.replace(f'_{level}', f'_{level}hPa')}_{year}_5.625deg.nc")
            da.to_dataset().to_netcdf(path, engine="netcdf4")
    land = land_sea_map(seed)
    os.makedirs(os.path.join(root, os.path.dirname(CONSTANTS)), exist_ok=True)
    xr.Dataset({"lsm": (("lat", "lon"), land.astype(np.float32))}, coords={"lat": lat, "lon": lon}).to_netcdf(
        os.path.join(root, CONSTANTS), engine="netcdf4")
    return land

