"""Hugging Face hub I/O through huggingface-hub, its failures turned into one clear line.

The token comes from huggingface-hub's usual places (`hf auth login`,
HF_TOKEN) and is never printed: errors name the repo and the reason only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .errors import UserError


def fetch(kind: str, repo_id: str, download: Callable[[], Path]) -> Path:
    """Run `download` (a snapshot of a model or dataset repo); any hub failure is a UserError."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return download()
    except RepositoryNotFoundError:
        reason = f"no such {kind} (or it is private: log in with `hf auth login`)"
    except LocalEntryNotFoundError:
        reason = "not reachable and not in the local cache"
    except (HfHubHTTPError, OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else e.__class__.__name__
    raise UserError(f"cannot fetch {kind} from the Hugging Face hub: {reason}", file=repo_id)


def upload(folder: Path, repo_id: str) -> str:
    """Create the model repo if needed and push the folder."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        api.create_repo(repo_id=repo_id, repo_type="model", exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                 commit_message="Upload DPO-tuned model from mlx-dpo")
    except HfHubHTTPError as e:
        # Never echo request headers: they carry the token.
        raise UserError(f"upload failed: HTTP {getattr(e.response, 'status_code', '?')}", file=repo_id) from None
    except (OSError, ValueError) as e:
        raise UserError(f"upload failed: {str(e).splitlines()[0]}", file=repo_id) from None
    return str(getattr(info, "commit_url", info))
