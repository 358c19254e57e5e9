"""Train an inrkit model in your own loop, on your own data (run by tests/core/test_embedding.py)."""

import skimage.data
import torch

import inrkit
from inrkit.images import resize_to

# Four 32x32 RGB images in [0, 1]: your own data goes here.
names = ("astronaut", "coffee", "chelsea", "rocket")
images = [resize_to(getattr(skimage.data, name)() / 255.0, (32, 32)) for name in names]
targets = torch.stack([inrkit.coords.to_signed(image).reshape(-1, 3) for image in images])  # (4, 1024, 3) in [-1, 1]

model = inrkit.create_model(activation="finer", sharing="minr", n_items=4, width=32, layers=5, seed=0)
coords = inrkit.coords.grid((32, 32))  # (1024, 2) pixel centres in [-1, 1], row-major like the images
opt = torch.optim.Adam(model.parameters(), lr=5e-4)
for step in range(300):  # your own loop
    pred = model(coords.expand(4, -1, -1))  # (N, P, out) = (4, 1024, 3)
    loss = ((pred - targets) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()

recon = inrkit.coords.to_unit(pred.detach())  # back to [0, 1], clamped
psnr = 10 * torch.log10(1 / ((recon - inrkit.coords.to_unit(targets.clone())) ** 2).mean())
print(f"PSNR {psnr:.2f} dB after {step + 1} steps")
