"""Words from the offline model's class hierarchy (`concept.hypernyms`, issue 28): the bundled
WordNet table, the lifting rule on hand-made class masses, and a fit that gets hypernym words."""

from __future__ import annotations

import importlib.util
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from concept.hypernyms import hierarchy, hypernym_words, lift
from concept.vocabulary import imagenet_classes

DOG, ENTITY, VEHICLE = "n02084071", "n00001740", "n04576211"  # dog.n.01, entity.n.01, wheeled_vehicle.n.01
CARS = [436, 468, 511, 609, 627, 656, 817]  # beach wagon, cab, convertible, jeep, limousine, minivan, sports car
BUSES = [654, 779, 874]  # minibus, school bus, trolleybus
TRUCKS = [555, 569, 675, 864]  # fire engine, garbage truck, moving van, tow truck


def _mass(*rows: list[int]) -> np.ndarray:
    out = np.zeros((len(rows), 1000), np.float32)
    for r, classes in enumerate(rows):
        out[r, classes] = 1.0
    return out


def _dog_breeds() -> list[int]:
    h = hierarchy()
    return [c.index for c in imagenet_classes() if h.under[c.index, h.wnids.index(DOG)]]


def test_the_table_covers_the_1000_classes_up_to_entity():
    h = hierarchy()
    classes = imagenet_classes()
    assert h.under.shape == (1000, len(h.wnids))
    assert {c.wnid for c in classes} <= set(h.wnids)
    roots = [w for w, p in zip(h.wnids, h.parents) if not p]
    assert roots == [ENTITY]
    assert (h.under[:, h.wnids.index(ENTITY)] == 1).all()  # every chain ends at entity
    for c in classes:  # each class lies under itself
        assert h.under[c.index, h.wnids.index(c.wnid)] == 1
    assert h.lemmas[h.wnids.index(DOG)][0] == "dog"


def test_every_dog_breed_chain_holds_dog():
    h = hierarchy()
    breeds = _dog_breeds()
    assert 110 <= len(breeds) <= 125  # ImageNet-1k's 118 dogs (and no cat)
    names = {imagenet_classes()[i].name for i in breeds}
    assert {"golden retriever", "beagle", "pug"} <= names and "tabby" not in names
    chain = h.chain(imagenet_classes()[207].wnid)  # golden retriever
    assert chain[0] == imagenet_classes()[207].wnid and DOG in chain and chain[-1] == ENTITY


def test_thirty_breeds_lift_to_dog():
    breeds = _dog_breeds()[::4][:30]  # spread over toy dogs, hounds, terriers, working dogs ...
    assert len(breeds) == 30
    assert hypernym_words(_mass(breeds)) == [["dog"]]


def test_cars_and_buses_lift_to_a_vehicle():
    assert hypernym_words(_mass(CARS[:4] + TRUCKS)) == [["motor vehicle"]]
    # WordNet 3.0 files a bus under "public transport", not "motor vehicle": cars and buses meet at
    # "conveyance" (a means of transport), not at the name of the larger part
    assert hypernym_words(_mass(CARS + BUSES)) == [["conveyance"]]
    assert hypernym_words(_mass(CARS[:3] + BUSES)) == [["conveyance"]]
    assert hypernym_words(_mass(CARS)) == [["car"]]
    assert hypernym_words(_mass(CARS + CARS + CARS + BUSES[:1])) == [["car"]]  # 7 of 8 parts cars


def test_one_class_names_itself_not_entity():
    (synsets,) = lift(_mass([207]), top_n=3)
    h = hierarchy()
    assert h.wnids[synsets[0][0]] == imagenet_classes()[207].wnid
    assert ENTITY not in {h.wnids[j] for j, _ in synsets}
    assert hypernym_words(_mass([207])) == [["golden retriever"]]


def test_a_spread_of_unrelated_classes_names_nothing():
    # hook, envelope, comic book, can opener, pedestal, ...: only "artifact"-like synsets are common
    spread = [600, 549, 917, 463, 708, 845, 470, 418, 530, 769]
    assert hypernym_words(_mass(spread)) == [[]]
    assert hypernym_words(np.zeros((1, 1000))) == [[]]


def test_a_synset_is_named_by_the_users_word():
    (words,) = hypernym_words(_mass(_dog_breeds()[::4][:30]), preferred={"domestic dog"})
    assert words == ["domestic dog"]
    # the best synset the user's words name comes after the best one overall
    (words,) = hypernym_words(_mass(CARS[:4] + TRUCKS), preferred={"car", "truck"})
    assert words == ["motor vehicle"]  # neither "car" nor "truck" holds most of the mass
    (words,) = hypernym_words(_mass(CARS + TRUCKS[:1]), preferred={"car", "truck"})
    assert words == ["car"]
    (words,) = hypernym_words(_mass(CARS + BUSES), preferred={"car", "bus", "automotive vehicle"})
    assert words == ["conveyance"]  # the best synset is not one of the user's words: only it
    (words,) = hypernym_words(_mass(CARS[:4] + TRUCKS), preferred={"car", "truck", "automotive vehicle"})
    assert words == ["automotive vehicle"]


def test_the_data_script_rebuilds_the_table(tmp_path):
    data_noun = Path("/usr/share/wordnet/data.noun")
    if not data_noun.exists():
        pytest.skip("WordNet (apt-get install wordnet-base) is needed to rebuild the table")
    script = Path(__file__).resolve().parents[1] / "scripts" / "build_hypernyms.py"
    spec = importlib.util.spec_from_file_location("build_hypernyms", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bundled = Path(str(files("concept.data").joinpath("imagenet_hypernyms.tsv")))
    (tmp_path / "imagenet_classes.tsv").write_text(
        bundled.with_name("imagenet_classes.tsv").read_text(encoding="utf-8"), encoding="utf-8")
    module.main(["--out", str(tmp_path)])
    assert (tmp_path / "imagenet_hypernyms.tsv").read_text(encoding="utf-8") == bundled.read_text(encoding="utf-8")


def _crops(image: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`n` random crops (60-100% of each side), some mirrored."""
    h, w = image.shape[:2]
    out = []
    for _ in range(n):
        ch, cw = int(h * rng.uniform(0.6, 1)), int(w * rng.uniform(0.6, 1))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = image[y:y + ch, x:x + cw]
        out.append(np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop))
    return out


@pytest.mark.slow
def test_a_fit_with_the_offline_model_gets_hypernym_words(monkeypatch):
    """scikit-image's cat and coffee photos (crops of each) fitted with the offline model and the
    bundled nouns: the fit finds each concept's hypernym from the model's class mass (the cat's
    classes, tabby, tiger cat, Egyptian cat, share "cat") and it leads the concept's words."""
    pytest.importorskip("efficientnet_lite_pytorch")
    data = pytest.importorskip("skimage.data")
    from concept import ConceptModel, describing
    from concept.embedding import OfflineEmbedder

    rng = np.random.default_rng(0)
    images = _crops(data.chelsea(), 12, rng) + _crops(data.coffee(), 12, rng)
    embedder = OfflineEmbedder("lite0", verbose=False)
    shared, features = embedder.embed_images_and_features(images)
    found = []
    real = describing.layer_hypernyms
    monkeypatch.setattr(describing, "layer_hypernyms", lambda *a: found.append(real(*a)) or found[-1])
    model = ConceptModel(embedding_model=embedder, min_concept_size=5, random_state=0, verbose=False)
    model.fit(image_embeddings=shared, image_features=features)
    cat = np.bincount(model.labels_[:12][model.labels_[:12] >= 0]).argmax()
    assert (model.labels_[:12] == cat).mean() > 0.8 and (model.labels_[12:] != cat).all()
    coffee = np.bincount(model.labels_[12:][model.labels_[12:] >= 0]).argmax()
    (layers,) = found
    words = layers[model.layer_]
    assert words[cat] == ["cat"] and words[coffee] == ["coffee"]
    assert model.topics_[cat][0][0] == "cat" and model.topics_[coffee][0][0] == "coffee"
    # a backend without class masses (CLIP and the others) gets none
    assert describing.layer_hypernyms(object(), [shared[:2]], ["cat"]) is None
