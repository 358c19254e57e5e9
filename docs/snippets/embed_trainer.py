"""inrkit's own trainer on a model you built or changed, with a callback (run by tests/core/test_embedding.py)."""

import skimage.data

import inrkit
from inrkit.images import resize_to
from inrkit.interfaces import Callback


class PrintPSNR(Callback):
    """A callback of your own: every hook it does not override does nothing."""

    name = "print-psnr"

    def on_step_end(self, context, log):
        if log.logged:  # every train.log_every steps
            print(f"step {log.step}: {log.psnr:.2f} dB (lr {log.lr:.1e})")


images = [resize_to(getattr(skimage.data, name)() / 255.0, (32, 32)) for name in ("astronaut", "coffee")]

model = inrkit.create_model("siren", "minr", n_items=2, width=32, seed=0)
model.items["projection"].requires_grad_(False)  # your change: freeze the projection layers

trainer = inrkit.Trainer(steps=200, log_every=50, device="cpu")  # chunked steps, Adam, lr decay
result = trainer.fit(model, images, callbacks=[PrintPSNR()])
print(f"{result.history[-1]['psnr']:.2f} dB after {result.steps} steps")
