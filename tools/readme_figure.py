"""The README's figure: a comparison's accuracy and length plots side by side, small enough to commit.

    rlino compare --out runs/main-job && python tools/readme_figure.py runs/main-job docs/figures/main-job.png
"""

import sys

from PIL import Image


def main(folder: str, out: str, height: int = 440, width: int = 1400) -> None:
    plots = [Image.open(f"{folder}/plots/{name}.png").convert("RGB") for name in ("accuracy", "length")]
    plots = [p.resize((round(p.width * height / p.height), height), Image.LANCZOS) for p in plots]
    figure = Image.new("RGB", (sum(p.width for p in plots) + 10 * (len(plots) - 1), height), "white")
    x = 0
    for p in plots:
        figure.paste(p, (x, 0))
        x += p.width + 10
    figure = figure.resize((width, round(figure.height * width / figure.width)), Image.LANCZOS)
    figure.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
