"""The learned guide of the reference at low resolution (fip.guide): trained with Lightning, stored in a card, run
by the engine."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import smooth_image

from fip.files import sha256_file
from fip.guide import LitGuide, guided_approximator, train_guide
from fip.metrics import psnr
from fip.models.cards import NetworkEntry, write_card
from fip.models.catalogue import model_for_operator, open_model
from fip.models.storage import NetworkFile, net_config, save_network
from fip.pipeline import run_approximation
from fip.registry import register_operator

# A tone curve: the colour guided filter's affine fit in each box cannot follow it through texture, a pixel-wise
# map of the photo can.
GAMMA = register_operator("tone.gamma_guide_test", description="a tone curve")(lambda image: image**2.2)


def _photo(seed: int) -> np.ndarray:
    image = smooth_image(150, 210, seed=seed)
    noise = 0.15 * np.random.default_rng(seed).standard_normal(image.shape).astype(np.float32)
    return np.clip(image + noise, 0.0, 1.0)


def _pairs(seeds) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(p, GAMMA.apply(p)) for p in map(_photo, seeds)]


def test_a_trained_guide_upsamples_better_and_the_engine_runs_it_as_trained(tmp_path):
    model = model_for_operator(GAMMA.name)  # reference-lowres alone
    trained = train_guide(model, "reference-lowres", _pairs(range(3)), _pairs([7]), steps=60, progress=False)
    assert trained.after > trained.before + 1.0 and (trained.train_photos, trained.validation_photos) == (3, 1)
    guide = trained.guide
    # Stored as a network of the model's card, the engine runs it like any approximator.
    path = save_network(NetworkFile(guide, "guide", GAMMA.name), tmp_path / "guide.pt")
    card = model.card.with_networks(
        {"guide": NetworkEntry(path.name, "fip", sha256_file(path), net_config(guide))},
        [guided_approximator(model.card.approximator("reference-lowres"), "guide")],
    )
    write_card(card, tmp_path)
    stored = open_model(tmp_path)
    assert stored.card.approximator("reference-lowres-learned").upsampler.guide == "guide"
    photo, target = _pairs([9])[0]
    learned = run_approximation(stored, photo, request="reference-lowres-learned")
    plain = run_approximation(stored, photo, request="reference-lowres")
    assert learned.plan.working_size == plain.plan.working_size == (50, 70)
    assert psnr(learned.image, target) > psnr(plain.image, target) + 1.0
    # The engine's fused kernels compute what training's torch operations do.
    module = LitGuide(stored.card.approximator("reference-lowres").upsampler)
    module.guide.load_state_dict(guide.state_dict())
    from fip.runtime.execute import Views, reference_small, to_batch

    small, result = reference_small(GAMMA.name, {}, Views.of_array(photo), (50, 70))
    expected = module(small, result, to_batch(photo)).clamp(0, 1)[0].permute(1, 2, 0).detach().numpy()
    np.testing.assert_allclose(learned.image, expected, atol=2e-4)


def test_an_untrained_guide_is_the_plain_upsampler_and_a_card_must_list_it(tmp_path):
    from fip.errors import InputError
    from fip.models.cards import CardError

    model = model_for_operator(GAMMA.name)
    module = LitGuide(model.card.approximator("reference-lowres").upsampler)  # its last layer starts at zero
    path = save_network(NetworkFile(module.guide.eval(), "guide", GAMMA.name), tmp_path / "guide.pt")
    entry = NetworkEntry(path.name, "fip", sha256_file(path), net_config(module.guide))
    approximator = guided_approximator(model.card.approximator("reference-lowres"), "guide")
    write_card(model.card.with_networks({"guide": entry}, [approximator]), tmp_path)
    stored, photo = open_model(tmp_path), _photo(3)
    np.testing.assert_allclose(
        run_approximation(stored, photo, request="reference-lowres-learned").image,
        run_approximation(stored, photo, request="reference-lowres").image,
        atol=1e-6,
    )
    with pytest.raises(CardError, match="guide network 'guide', which the card does not list"):
        model.card.with_networks({}, [approximator])
    with pytest.raises(InputError, match="does not run the reference at low resolution"):
        train_guide(model_for_operator("smooth.l0"), "fast", [], [], steps=1)
