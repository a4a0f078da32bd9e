"""A live line plot of one or more metric series against the training step."""

from __future__ import annotations

from textual_plotext import PlotextPlot

COLORS = ("cyan", "orange", "green", "magenta")


class MetricPlot(PlotextPlot):
    def __init__(self, title: str, series: tuple[str, ...], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = title
        self.series: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in series}

    def on_mount(self) -> None:
        super().on_mount()
        self.redraw()

    def add(self, name: str, step: float, value: float) -> None:
        xs, ys = self.series[name]
        xs.append(step)
        ys.append(value)
        self.redraw()

    def points(self, name: str) -> int:
        return len(self.series[name][0])

    def reset(self) -> None:
        for xs, ys in self.series.values():
            xs.clear()
            ys.clear()
        self.redraw()

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        last = max((xs[-1] for xs, _ in self.series.values() if xs), default=0)
        if last >= 4:  # whole steps on the axis, not 10.8 / 20.5
            plt.xticks(sorted({max(1, round(last * i / 4)) for i in range(5)}))
        for color, (name, (xs, ys)) in zip(COLORS, self.series.items()):
            if xs:
                # a lone point is drawn as a marker so the first step is visible
                plt.plot(xs, ys, label=name, color=color, marker="braille" if len(xs) > 1 else "dot")
        self.refresh()
