"""``python -m inrkit``: the CLI, also what ``torchrun --nproc_per_node K -m inrkit run ...`` starts."""

from inrkit.cli import main

if __name__ == "__main__":
    main(prog_name="inrkit")
