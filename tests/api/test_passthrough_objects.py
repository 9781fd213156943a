"""Which object a passthrough path is about (api/passthrough_objects.py): everything under an
object is governed by its top-level object's owner."""

from __future__ import annotations

import pytest

from llm_gateway.api.passthrough_objects import answer_read, listed, target_of


@pytest.mark.parametrize(("path", "kind", "object_id"), [
    ("/v1/files/file-1/content", "file", "file-1"),
    ("/v1/fine_tuning/jobs/ftjob-1/events", "fine_tuning_job", "ftjob-1"),
    ("/v1/vector_stores/vs_1/files/file-2", "vector_store", "vs_1"),
    ("/v1/threads/thread_1/runs/run_1/cancel", "thread", "thread_1"),
    ("/v1/videos/characters/char_1", "video_character", "char_1"),
    ("/v1/videos/video_1/remix", "video", "video_1"),
    ("/v1/threads/runs", "thread", None),  # creates a thread and its run
    ("/v1/responses/compact", "response", None),
    ("/v1/files", "file", None),
    ("/v1/images/generations", None, None),
])
def test_each_path_is_about_its_top_level_object(path, kind, object_id):
    found = target_of(path)
    assert (found.collection.kind if found else None) == kind
    assert (found.object_id if found else None) == object_id


def test_lists_and_the_answers_the_gateway_reads():
    assert listed("GET", "/v1/files").kind == "file"
    assert listed("GET", "/v1/vector_stores/vs_1/files") is None  # its store's, not filtered
    assert listed("POST", "/v1/files") is None
    assert answer_read("POST", "/v1/uploads/upload_1/complete")
    assert answer_read("GET", "/v1/batches/batch_1")  # names the files it wrote
    assert not answer_read("GET", "/v1/files/file-1/content")  # a download: streamed as is
