"""sdtt-search: cheap reasoning by search with fast masked diffusion LMs.

    from sdtt_search import load_model, Search
    from tasks import load_task

    task = load_task("countdown", n=3)
    model = load_model("countdown-cd3-num-sdtt-4")      # zoo name or checkpoint directory
    search = Search(model, task)  # the model's recorded decoding; or sampler=SamplerConfig(...)
    result = search.best_of_n(task.problems("test", limit=100), n=64)
    print(result.metrics["accuracy"]["verified@64"])

    # a cascade: the student until one candidate verifies (at most 4), the AR twin for the rest
    from sdtt_search import Cascade, Stage
    ar = load_model("countdown-cd3-ar")
    cascade = Cascade([Stage(search, samples=4, round_size=1), Stage(Search(ar, task, seed=1), samples=64, round_size=32)])
    print(cascade.best_of_n(task.problems("test", limit=100)).metrics["accuracy"]["verified"])
"""
from .diffusion import generate
from .diffusion_model import DiffusionModel
from .interface import Completions, Model
from .loading import load_ar_as_denoiser, load_model
from .sampling_config import SamplerConfig
from .search.cascade import Cascade, Stage
from .search.engine import Search, SearchResult

__version__ = "0.1.0"

__all__ = ["SamplerConfig", "generate", "Completions", "Model", "DiffusionModel", "load_model", "load_ar_as_denoiser",
           "Search", "SearchResult", "Cascade", "Stage", "__version__"]
