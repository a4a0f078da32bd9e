"""Token lengths of a split as a histogram, with the --max-length cut marked."""

from __future__ import annotations

from textual_plotext import PlotextPlot


class LengthChart(PlotextPlot):
    def show(self, lengths: list[int], max_length: int) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("tokens per pair (prompt + longer answer)")
        if lengths:
            plt.hist(lengths, bins=min(20, max(5, len(set(lengths)))))
            plt.vline(max_length, "red")
            plt.xlim(0, max(max(lengths), max_length) * 1.05)
        self.refresh()
