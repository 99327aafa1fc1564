"""ipywidgets UIs over the console: move a control, see the figure, hear the result.

Every widget is a small object with

- ``controls``: a dict of its ipywidgets (sliders, dropdowns) by name, e.g.
  ``w.controls["eq.band0.gain_db"]``; names follow the parameter table
  (:mod:`diffmst_lite.console.params`) and the mixing sheet;
- ``render()``: the audio for the current settings (numpy, ``(channels, samples)``
  or the input's shape);
- ``plot_data``: the numbers the figure shows, and ``figure()``: that figure;
- ``player()``: labelled players of ``clips()`` (e.g. before/after), loudness-matched
  or at true relative levels (``level``), via :func:`diffmst_lite.book.notebook.compare`;
- ``apply(settings)``: set several controls by name; ``gallery(presets)``: a figure
  and a player per named preset, the static stand-in for the widget on the book's
  pages (computed when the notebook runs; the widget itself needs a kernel).

Setting a control's ``.value`` (in code or with the mouse) updates the widget's
settings at once, so tests run without a browser. When the widget is displayed
(``show_widget(w)`` from :mod:`diffmst_lite.book.notebook`) it also redraws its figure
and players in an ``ipywidgets.Output`` after every change (sliders use
``continuous_update=False``: one render per release of the mouse). Every control row
keeps its sliders at a fixed width (tracks >= 150 px) and wraps on a narrow page.
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch

from diffmst_lite.console import params
from diffmst_lite.book import plotting
from diffmst_lite.console.mixer import MixingConsole
from diffmst_lite.dsp.biquads import parametric_eq
from diffmst_lite.dsp.dynamics import compressor
from diffmst_lite.dsp.panning import pan_gains
from diffmst_lite.book.notebook import Comparison, compare
from diffmst_lite.console.sheet import params_to_sheet, sheet_to_params

COMPRESSOR_NAMES = [f"compressor.{f}" for f in params.COMPRESSOR_FIELDS]
DEFAULT_COMPRESSOR = {"compressor.threshold_db": -24.0, "compressor.ratio": 4.0, "compressor.attack_ms": 10.0,
                      "compressor.release_ms": 100.0, "compressor.knee_db": 6.0, "compressor.makeup_db": 0.0}

# Layout (px). A slider's track is its width minus the description and the readout
# (at least ~72 px in ipywidgets 8): these widths leave every track >= 150 px.
SLIDER_WIDTH, DESCRIPTION_WIDTH = "370px", "120px"  # faders, pans, compressor, master gains
EQ_SLIDER_WIDTH, EQ_DESCRIPTION_WIDTH = "300px", "64px"  # three per band row
ROW_LABEL_WIDTH = "90px"  # a track's or a band's name at the start of its row
_NAMES = {"q": "Q", "gain_in": "input gain", "gain_out": "output gain"}


def control_label(spec: params.ParamSpec) -> str:
    """A slider's description: the parameter's last name without its unit suffix, and the
    unit, e.g. ``eq.band0.freq_hz`` -> ``"freq (Hz)"``, ``compressor.attack_ms`` ->
    ``"attack (ms)"``, ``compressor.ratio`` -> ``"ratio (n:1)"``, ``eq.band0.q`` -> ``"Q"``.
    (The full name is the slider's tooltip.)"""
    leaf = spec.name.rsplit(".", 1)[-1]
    for suffix in ("_db", "_hz", "_ms"):
        leaf = leaf.removesuffix(suffix)
    leaf = _NAMES.get(leaf, leaf.replace("_", " "))
    unit = f"n{spec.unit}" if spec.unit.startswith(":") else spec.unit
    return f"{leaf} ({unit})" if unit else leaf


def slider(spec: params.ParamSpec, value: float, width: str = SLIDER_WIDTH,
           description_width: str = DESCRIPTION_WIDTH) -> W.Widget:
    """A horizontal slider over the range of ``spec`` (logarithmic for log-mapped
    parameters), described by :func:`control_label`, with the full parameter name as
    tooltip; it keeps its ``width`` (does not shrink in a row, so no scrollbar)."""
    common = dict(description=control_label(spec), tooltip=spec.name, value=value, continuous_update=False,
                  style={"description_width": description_width}, layout=W.Layout(width=width, flex="0 0 auto"))
    if spec.log:
        low, high = math.log10(spec.low), math.log10(spec.high)
        return W.FloatLogSlider(min=low, max=high, step=(high - low) / 200, base=10,
                                readout_format=".0f" if spec.unit == "Hz" else ".4g", **common)
    return W.FloatSlider(min=spec.low, max=spec.high, step=(spec.high - spec.low) / 200,
                         readout_format=".1f" if spec.unit == "dB" else ".2f", **common)


def row(label: str | None, children: list[W.Widget], tooltip: str | None = None) -> W.Widget:
    """A row of controls after a fixed-width name; it wraps (rather than squeezing its
    controls or scrolling) where the page is narrower than the row."""
    name = [W.Label(label, tooltip=tooltip or label, layout=W.Layout(width=ROW_LABEL_WIDTH, flex="0 0 auto"))]
    return W.HBox((name if label is not None else []) + children,
                  layout=W.Layout(flex_flow="row wrap", align_items="center"))


def _mono_or_stereo(audio: Any) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    if x.dim() not in (1, 2):
        raise ValueError(f"audio must be (samples,) or (channels, samples), got shape {tuple(x.shape)}")
    return x


class ConsoleUI:
    """Shared machinery: controls with observers, a lazily drawn output area, presets.

    The players under the figure (:meth:`clips`, labelled) play at :attr:`level`:
    ``"loudness"`` (matched at -23 LUFS, so a setting is heard for its sound) or
    ``"true"`` (true relative levels with a clip guard, for widgets whose controls are
    levels: faders, makeup and output gains). :meth:`gallery` renders named presets
    (figure and player each) for pages that cannot run the widget.
    """

    level = "loudness"

    def __init__(self, sample_rate: int):
        self.sample_rate = int(sample_rate)
        self.controls: dict[str, W.Widget] = {}
        self.output = W.Output()
        self.ui: W.Widget = W.VBox()
        self._muted = False  # True while the code (not the user) sets slider values
        self._shown = False

    def _add(self, key: str, control: W.Widget) -> W.Widget:
        control.observe(lambda change, key=key: self._changed(key, change["new"]), names="value")
        self.controls[key] = control
        return control

    def _track_row(self, name: str, specs: list[params.ParamSpec]) -> W.Widget:
        """A track's fader and pan (``<name>.gain_db``, ``<name>.pan``) in one row, ranges from ``specs``."""
        return row(name, [self._add(f"{name}.gain_db", slider(specs[params.GAIN], 0.0)),
                          self._add(f"{name}.pan", slider(specs[params.PAN], 0.0))])

    def _eq_rows(self, specs: list[params.ParamSpec], values: dict[str, float]) -> list[W.Widget]:
        """One row per EQ band: frequency, gain and Q sliders (``specs``: the 18 EQ specs,
        frequencies, gains, Qs, each in band order)."""
        return [row(band, [self._add(s.name, slider(s, values[s.name], EQ_SLIDER_WIDTH, EQ_DESCRIPTION_WIDTH))
                           for s in specs[i::6]], tooltip=f"eq.{band}")
                for i, band in enumerate(params.BAND_NAMES)]

    def _compressor_rows(self, specs: list[params.ParamSpec], values: dict[str, float]) -> list[W.Widget]:
        """The six compressor sliders, two per row: the static curve, then the time constants."""
        threshold, ratio, attack, release, knee, makeup = (self._add(s.name, slider(s, values[s.name])) for s in specs)
        return [row(None, [threshold, ratio]), row(None, [knee, makeup]), row(None, [attack, release])]

    def _changed(self, key: str, value: Any) -> None:
        if self._muted:
            return
        self._set(key, value)
        if self._shown:
            self.redraw()

    def _set_controls(self, values: dict[str, Any]) -> None:
        """Show ``values`` on the sliders without triggering their callbacks."""
        self._muted = True
        try:
            for key, value in values.items():
                self.controls[key].value = value
        finally:
            self._muted = False

    def apply(self, settings: dict[str, Any]) -> None:
        """Set controls by name ({control name: value}), in order, as a hand on the
        sliders would (so ``{"select": "master", "compressor.ratio": 2.0}`` works in the
        console); redraw once afterwards if the widget is shown."""
        shown, self._shown = self._shown, False
        try:
            for key, value in settings.items():
                if key not in self.controls:
                    raise KeyError(f"no control {key!r}; controls: {', '.join(self.controls)}")
                self.controls[key].value = value
        finally:
            self._shown = shown
        if shown:
            self.redraw()

    def _state(self) -> Any:
        """Everything :meth:`_restore` needs to put the settings back (here: the controls' values)."""
        return {key: control.value for key, control in self.controls.items()}

    def _restore(self, state: Any) -> None:
        self._set_controls(state)
        for key, value in state.items():
            self._set(key, value)

    def _set(self, key: str, value: Any) -> None:
        raise NotImplementedError

    def render(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def plot_data(self) -> dict[str, Any]:
        raise NotImplementedError

    def figure(self):
        raise NotImplementedError

    def redraw(self) -> None:
        """Draw the current figure and the players into the output area."""
        from IPython.display import clear_output, display

        with self.output:
            clear_output(wait=True)
            fig = self.figure()
            display(fig)
            plt.close(fig)
            display(self.player())

    def clips(self) -> dict[str, np.ndarray]:
        """What plays under the figure, by label: here the rendered audio."""
        return {"mix (current settings)": self.render()}

    def player(self) -> Comparison:
        """The labelled players of :meth:`clips`, at :attr:`level` (:func:`compare`)."""
        return compare(self.clips(), self.sample_rate, level=self.level)

    def gallery(self, presets: dict[str, dict[str, Any]], caption: str = "Presets", columns: int = 1,
                seconds: float | None = 6.0) -> Comparison:
        """A static stand-in for the widget: for each named preset, its figure and a player.

        Each preset ({control name: value}, ``{}`` for the current settings) is applied
        with :meth:`apply` on top of the widget's current settings, which are restored
        afterwards. The players play at :attr:`level` across the presets: loudness-matched
        (-23 LUFS), or at their true relative levels where the controls are levels; the
        caption says which. Renders once per preset (cheap enough for the book build).

        Returns the :func:`compare` table (labels, figures, players; ``.lufs`` per preset).
        """
        state, shown, self._shown = self._state(), self._shown, False
        clips, figures = {}, {}
        try:
            for name, preset in presets.items():
                self._restore(state)
                self.apply(preset)
                clips[name], figures[name] = self.render(), self.figure()
        finally:
            self._restore(state)
            self._shown = shown
        table = compare(clips, self.sample_rate, level=self.level, seconds=seconds, caption=caption,
                        columns=columns, figures=figures)
        for fig in figures.values():
            plt.close(fig)
        return table

    def _repr_mimebundle_(self, **kwargs):
        if not self._shown:  # draw on first display only: building the widget costs no render
            self._shown = True
            self.redraw()
        return self.ui._repr_mimebundle_(**kwargs)


class MixerWidget(ConsoleUI):
    """A fader (dB) and a pan knob per mono track; plays the sum (the -4.5 dB pan law).

    Controls: ``"{name}.gain_db"`` and ``"{name}.pan"`` for every track.

    Chapter 2: Gain and panning.
    """

    level = "true"  # its controls are levels: play them level-true

    def __init__(self, tracks: Any, names: list[str], sample_rate: int):
        super().__init__(sample_rate)
        self.tracks = torch.as_tensor(np.asarray(tracks, dtype=np.float32))
        if self.tracks.dim() != 2 or len(names) != self.tracks.shape[0]:
            raise ValueError(f"tracks must be (T, N) with one name per track, got {tuple(self.tracks.shape)}")
        self.names = list(names)
        self.gains_db = np.zeros(len(names))
        self.pans = np.zeros(len(names))
        specs = params.track_param_specs(sample_rate)
        self.ui = W.VBox([self._track_row(name, specs) for name in self.names] + [self.output])

    def _set(self, key: str, value: float) -> None:
        name, field = key.rsplit(".", 1)
        (self.gains_db if field == "gain_db" else self.pans)[self.names.index(name)] = value

    def render(self) -> np.ndarray:
        """The stereo mix ``(2, N)``: sum of ``10^(g/20) * (left, right) * track``."""
        left, right = pan_gains(torch.as_tensor(self.pans, dtype=torch.float32))
        amp = torch.pow(10.0, torch.as_tensor(self.gains_db, dtype=torch.float32) / 20)
        return torch.stack([(amp * left) @ self.tracks, (amp * right) @ self.tracks]).numpy()

    @property
    def plot_data(self) -> dict[str, Any]:
        return {"mix": self.render(), "gains_db": self.gains_db.copy(), "pans": self.pans.copy()}

    def figure(self):
        return plotting.mixer_figure(self.render(), self.sample_rate, self.names, self.gains_db, self.pans)


class EQWidget(ConsoleUI):
    """The six-band parametric EQ on one signal: sliders, magnitude response, before/after audio.

    Controls: ``"eq.{band}.freq_hz"``, ``"eq.{band}.gain_db"``, ``"eq.{band}.q"`` for
    band in ``params.BAND_NAMES`` (ranges from :func:`diffmst_lite.console.params.band_freq_ranges`).
    ``settings`` overrides the flat start ({name: value}).

    Chapter 3: Parametric EQ.
    """

    def __init__(self, audio: Any, sample_rate: int, settings: dict[str, float] | None = None):
        super().__init__(sample_rate)
        self.audio = _mono_or_stereo(audio)
        specs = params.track_param_specs(sample_rate)[params.EQ_FREQ.start : params.EQ_Q.stop]
        self.values = {**params.neutral_physical(specs), **(settings or {})}
        self.ui = W.VBox(self._eq_rows(specs, self.values) + [self.output])

    def _set(self, key: str, value: float) -> None:
        self.values[key] = float(value)

    def _bands(self) -> list[list[float]]:
        return [[self.values[f"eq.{b}.{leaf}"] for b in params.BAND_NAMES] for leaf in ("freq_hz", "gain_db", "q")]

    def render(self) -> np.ndarray:
        """The equalised signal, same shape as the input."""
        x = self.audio.reshape(1, -1, self.audio.shape[-1])
        freq, gain_db, q = (torch.tensor([v]) for v in self._bands())
        return parametric_eq(x, self.sample_rate, freq, gain_db, q).reshape(self.audio.shape).numpy()

    @property
    def plot_data(self) -> dict[str, Any]:
        """``freq_hz (F,)``, ``bands_db (6, F)``, ``total_db (F,)``."""
        return plotting.eq_curves_data(*self._bands(), self.sample_rate)

    def figure(self):
        data = self.plot_data
        fig = plotting.eq_response_figure(data, self.sample_rate, show_ranges=True)
        top = max(15.0, float(np.abs(data["total_db"]).max()) + 3)  # deep cuts stay on the plot
        fig.axes[0].set_ylim(-top, top)
        fig.axes[0].legend(fontsize=7, ncol=4, loc="best")  # where it hides no curve
        return fig

    def clips(self) -> dict[str, np.ndarray]:
        """The original and the equalised audio (played loudness-matched)."""
        return {"before (no EQ)": self.audio.numpy(), "after (EQ)": self.render()}


class CompressorWidget(ConsoleUI):
    """The compressor's six parameters; static curve, gain reduction over time, audio.

    Controls: ``"compressor.threshold_db"``, ``"compressor.ratio"``, ``"compressor.attack_ms"``,
    ``"compressor.release_ms"``, ``"compressor.knee_db"``, ``"compressor.makeup_db"``.

    Chapter 4: Dynamic range compression.
    """

    level = "true"  # its controls are levels: play them level-true

    def __init__(self, audio: Any, sample_rate: int, settings: dict[str, float] | None = None):
        super().__init__(sample_rate)
        self.audio = _mono_or_stereo(audio)
        self.values = {**DEFAULT_COMPRESSOR, **(settings or {})}
        specs = params.track_param_specs(sample_rate)[params.COMPRESSOR]
        self.ui = W.VBox(self._compressor_rows(specs, self.values) + [self.output])

    def _set(self, key: str, value: float) -> None:
        self.values[key] = float(value)

    def _settings(self) -> list[float]:
        return [self.values[name] for name in COMPRESSOR_NAMES]

    def render(self) -> np.ndarray:
        """The compressed signal (the console's compressor), same shape as the input."""
        x = self.audio.reshape(1, -1, self.audio.shape[-1])
        return compressor(x, self.sample_rate, *(torch.tensor([v]) for v in self._settings())).reshape(
            self.audio.shape).numpy()

    @property
    def plot_data(self) -> dict[str, Any]:
        """Static curve (``input_db``, ``output_db``) and ``time_s``, ``level_db``, ``gain_reduction_db``."""
        threshold, ratio, _, _, knee, makeup = self._settings()
        return {**plotting.static_curve_data(threshold, ratio, knee, makeup),
                **plotting.compressor_gain_data(self.audio, self.sample_rate, *self._settings())}

    def figure(self):
        threshold, ratio, _, _, knee, makeup = self._settings()
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), width_ratios=(1, 1.8), layout="constrained")
        plotting.compressor_curve_figure(threshold, ratio, knee, makeup, ax=left)
        data = plotting.compressor_gain_data(self.audio, self.sample_rate, *self._settings())
        plotting.gain_reduction_figure(data, threshold, ax=right)
        return fig

    def clips(self) -> dict[str, np.ndarray]:
        """The input and the compressed audio (played at their true relative levels)."""
        return {"before (uncompressed)": self.audio.numpy(), "after (compressed)": self.render()}


class ConsoleWidget(ConsoleUI):
    """The whole console over a multitrack: channel strips, a track selector, the master bus.

    Per track: ``"{name}.gain_db"`` and ``"{name}.pan"``; the master: ``"master.gain_in_db"``
    and ``"master.gain_out_db"``. ``"select"`` picks the track (or ``"master"``) whose EQ
    and compressor the ``"eq.*"`` and ``"compressor.*"`` sliders show and change.
    Renders with :class:`diffmst_lite.console.MixingConsole`; a track is re-processed
    only when its settings changed. Loads and exports mixing sheets (tracks match by order).

    Chapter 5: The master bus and the whole console.
    """

    level = "true"  # its controls are levels: play them level-true

    def __init__(self, tracks: Any, names: list[str], sample_rate: int, sheet: dict[str, Any] | None = None):
        super().__init__(sample_rate)
        self.tracks = torch.as_tensor(np.asarray(tracks, dtype=np.float32))
        if self.tracks.dim() != 2 or len(names) != self.tracks.shape[0]:
            raise ValueError(f"tracks must be (T, N) with one name per track, got {tuple(self.tracks.shape)}")
        self.names = list(names)
        self.console = MixingConsole(sample_rate)
        specs, mspecs = self.console.track_specs, self.console.master_specs
        self.track_values = params.to_physical(params.neutral_params(specs).double(), specs).repeat(len(names), 1)
        self.master_values = params.to_physical(params.neutral_params(mspecs).double(), mspecs)
        self._cache: dict[int, tuple[bytes, torch.Tensor]] = {}
        strips = [self._track_row(name, specs) for name in self.names]
        master = row("master bus", [self._add(f"master.{s.name}", slider(s, 0.0))
                                    for s in (mspecs[params.GAIN], mspecs[params.GAIN_OUT])])
        select = self._add("select", W.Dropdown(options=self.names + ["master"], value=self.names[0],
                                                description="EQ and compressor of", style={"description_width": "160px"},
                                                layout=W.Layout(width="340px")))
        detail = specs[params.EQ_FREQ.start : params.COMPRESSOR.stop]
        self._detail_index = {s.name: params.EQ_FREQ.start + i for i, s in enumerate(detail)}
        shown = {s.name: float(self.track_values[0, i]) for s, i in zip(detail, self._detail_index.values())}
        self.ui = W.VBox(strips + [master, select] + self._eq_rows(detail[:18], shown)
                         + self._compressor_rows(detail[18:], shown) + [self.output])
        if sheet is not None:
            self.load_sheet(sheet)
        else:
            self._show_selected()

    @classmethod
    def from_sheet(cls, tracks: Any, sheet: dict[str, Any], names: list[str] | None = None) -> "ConsoleWidget":
        """A console set up from a mixing sheet (names default to the sheet's)."""
        names = names or [t["name"] for t in sheet["tracks"]]
        return cls(tracks, names, sheet["sample_rate"], sheet=sheet)

    # ------------------------------------------------------------ settings

    def _strip(self, who: str) -> torch.Tensor:
        return self.master_values if who == "master" else self.track_values[self.names.index(who)]

    def _set(self, key: str, value: Any) -> None:
        if key == "select":
            self._show_selected()
            return
        if key in self._detail_index:
            self._strip(self.controls["select"].value)[self._detail_index[key]] = float(value)
            return
        who, field = key.rsplit(".", 1)
        index = {"gain_db": params.GAIN, "pan": params.PAN, "gain_in_db": params.GAIN, "gain_out_db": params.GAIN_OUT}[field]
        self._strip(who)[index] = float(value)

    def _show_selected(self) -> None:
        values = self._strip(self.controls["select"].value)
        self._set_controls({key: float(values[i]) for key, i in self._detail_index.items()})

    def _show_all(self) -> None:
        """Put the settings on every slider: faders, pans, master gains, the selected strip."""
        shown = {f"{n}.gain_db": float(v[params.GAIN]) for n, v in zip(self.names, self.track_values)}
        shown |= {f"{n}.pan": float(v[params.PAN]) for n, v in zip(self.names, self.track_values)}
        shown |= {"master.gain_in_db": float(self.master_values[params.GAIN]),
                  "master.gain_out_db": float(self.master_values[params.GAIN_OUT])}
        self._set_controls(shown)
        self._show_selected()

    def _state(self) -> tuple[torch.Tensor, torch.Tensor, str]:
        return self.track_values.clone(), self.master_values.clone(), self.controls["select"].value

    def _restore(self, state: tuple[torch.Tensor, torch.Tensor, str]) -> None:
        tracks, master, selected = state
        self.track_values, self.master_values = tracks.clone(), master.clone()
        self._set_controls({"select": selected})
        self._show_all()

    def load_sheet(self, sheet: dict[str, Any]) -> None:
        """Set every control from a mixing sheet (validated; same track count and sample rate)."""
        parsed = sheet_to_params(sheet, num_tracks=len(self.names), sample_rate=self.sample_rate)
        self.track_values = params.to_physical(parsed["track_params"].double(), self.console.track_specs)
        self.master_values = params.to_physical(parsed["master_params"].double(), self.console.master_specs)
        self._show_all()
        if self._shown:
            self.redraw()

    def to_sheet(self) -> dict[str, Any]:
        """The current settings as a mixing sheet (physical units, rounded to 4 decimals)."""
        track = params.to_unit(self.track_values, self.console.track_specs)
        master = params.to_unit(self.master_values, self.console.master_specs)
        return params_to_sheet(track, master, self.sample_rate, self.names)

    # ------------------------------------------------------------ rendering

    def _wet_tracks(self) -> torch.Tensor:
        """Processed tracks ``(T, 2, N)``, re-rendering only those whose settings changed."""
        unit = params.to_unit(self.track_values, self.console.track_specs).float().clamp(0, 1)
        stale = [i for i in range(len(self.names)) if self._cache.get(i, (None,))[0] != unit[i].numpy().tobytes()]
        if stale:
            with torch.no_grad():
                wet = self.console.process_tracks(self.tracks[stale][None], unit[stale][None])[0]
            for j, i in enumerate(stale):
                self._cache[i] = (unit[i].numpy().tobytes(), wet[j])
        return torch.stack([self._cache[i][1] for i in range(len(self.names))])

    def render(self) -> np.ndarray:
        """The stereo mix ``(2, N)`` for the current settings."""
        master = params.to_unit(self.master_values, self.console.master_specs).float().clamp(0, 1)
        with torch.no_grad():
            return self.console.master_bus(self._wet_tracks().sum(0)[None], master[None])[0].numpy()

    @property
    def plot_data(self) -> dict[str, Any]:
        return {"mix": self.render(), "gains_db": self.track_values[:, params.GAIN].numpy().copy(),
                "pans": self.track_values[:, params.PAN].numpy().copy()}

    def figure(self):
        data = self.plot_data
        return plotting.mixer_figure(data["mix"], self.sample_rate, self.names, data["gains_db"], data["pans"],
                                     title="Mix (console)")
