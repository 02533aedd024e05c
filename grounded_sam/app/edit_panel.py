"""The edit panel under Run: fix the result by clicking on the overlay, one editor per browser session.

After Run, :meth:`EditHandlers.start_editing` opens an :class:`~grounded_sam.editing.editor.Editor` of
the result (see :mod:`grounded_sam.editing.editor`); every edit then answers with the components of
:attr:`EditHandlers.outputs`, sending as ``gr.skip()`` (left out of the answer) what did not change
since the last answer, so a click on one object sends its new overlay, its table row and the status
line. The downloads follow every edit in a second, cheaper event.

Where the server saves edits (:mod:`grounded_sam.editing.store`), each editor saves after every edit under
the browser's *owner key*: a random key kept in the browser's localStorage (a ``gr.BrowserState``), not
Gradio's session hash, which changes on every reload. On page load, :meth:`EditHandlers.offer_resume`
lists that key's saved images, and :meth:`EditHandlers.resume` rebuilds an editor from one of them,
after a reload or a server restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr
from gradio.components import Component

from grounded_sam.app import gpu
from grounded_sam.app.errors import EDIT_ERROR_S, user_errors
from grounded_sam.app.image_result import image_details, open_editor
from grounded_sam.app.markup import EDIT_IDLE, EDIT_READY, legend_markup, status_html
from grounded_sam.app.options import ModelOptions
from grounded_sam.app.options_panel import OptionsPanel
from grounded_sam.app.queues import EDIT_GROUP, MODEL_GROUP
from grounded_sam.app.settings import AppSettings

if TYPE_CHECKING:
    from grounded_sam.editing.editor import Editor, EditorRegistry
    from grounded_sam.editing.store import EditStore

__all__ = ["EDITOR_TTL_S", "OWNER_STORAGE_KEY", "EditHandlers", "EditPanel", "ResultView", "ResumeRow",
           "build_edit_panel", "build_resume_row", "editor_state", "release_on_unload", "wire_edit_panel",
           "wire_resume"]

logger = logging.getLogger(__name__)

#: An editor left untouched this long is released (closed tabs are released at once, on unload).
EDITOR_TTL_S = 2 * 3600

#: The localStorage entry that holds the browser's owner key: fixed, so a restarted server's page finds it.
OWNER_STORAGE_KEY = "grounded-sam-owner"
# BrowserState encrypts what it stores with a secret that Gradio sends to every page in its config, so
# the secret hides nothing from the page's own user; what keeps an owner's edits private is the key itself
# (random, and known only to that browser). It is fixed because a random one per start would leave a
# restarted server unable to read the keys its pages stored.
_OWNER_STORAGE_SECRET = "grounded-sam-2-saved-edits"

Labels = tuple[list[Any], tuple[str, ...]]


@dataclass(frozen=True)
class EditPanel:
    """The panel's controls: what a click on the overlay does, the class it uses, the buttons and the status."""

    mode: gr.Radio
    class_name: gr.Dropdown
    delete: gr.Button
    relabel: gr.Button
    undo: gr.Button
    redo: gr.Button
    reset: gr.Button
    status: gr.HTML


@dataclass(frozen=True)
class ResultView:
    """The image tab's components that hold or show the result an editor works on."""

    image: gr.Image
    overlay: gr.Image
    record: gr.JSON
    legend: gr.HTML
    table: gr.Dataframe
    downloads: gr.File
    state: gr.State


@dataclass(frozen=True)
class ResumeRow:
    """The browser's owner key and the row that offers to resume its saved edits (hidden while it has none)."""

    owner: gr.BrowserState
    row: gr.Row
    choice: gr.Dropdown
    button: gr.Button


def build_resume_row() -> ResumeRow:
    """Creates the owner key's state and the resume row (where it is called)."""
    owner = gr.BrowserState(None, storage_key=OWNER_STORAGE_KEY, secret=_OWNER_STORAGE_SECRET)
    with gr.Row(visible=False, equal_height=True, elem_id="resume-row") as row:
        choice = gr.Dropdown([], value=None, label="Your saved edits (kept by this browser)", scale=3,
                             elem_id="resume-choice")
        button = gr.Button("Resume editing", scale=1, elem_id="resume")
    return ResumeRow(owner, row, choice, button)


def build_edit_panel() -> EditPanel:
    """Creates the panel's controls (in a group, where it is called)."""
    from grounded_sam.editing.editor import EDIT_MODES, SELECT

    with gr.Group(elem_id="edit-panel"):
        with gr.Row(equal_height=True):
            mode = gr.Radio(list(EDIT_MODES), value=SELECT, label="A click on the overlay",
                            elem_id="edit-mode", scale=3)
            class_name = gr.Dropdown([], value=None, allow_custom_value=True, scale=1,
                                     label="Class (new object, relabel)", elem_id="edit-class")
        with gr.Row():
            delete = gr.Button("Delete", size="sm", elem_id="edit-delete")
            relabel = gr.Button("Relabel", size="sm", elem_id="edit-relabel")
            undo = gr.Button("Undo", size="sm", interactive=False, elem_id="edit-undo")
            redo = gr.Button("Redo", size="sm", interactive=False, elem_id="edit-redo")
            reset = gr.Button("Reset", size="sm", elem_id="edit-reset")
        status = gr.HTML(status_html(EDIT_IDLE), elem_id="edit-status")
    return EditPanel(mode, class_name, delete, relabel, undo, redo, reset, status)


def editor_state(editors: EditorRegistry) -> gr.State:
    """One browser session's editor; released when the session ends or after EDITOR_TTL_S without an edit."""
    return gr.State(None, time_to_live=EDITOR_TTL_S,
                    delete_callback=lambda e: editors.discard(e) if e is not None else None)


def release_on_unload(editors: EditorRegistry) -> Callable[[gr.Request], None]:
    """The handler of ``demo.unload``: a closed page releases its editor at once."""

    def release_editor(request: gr.Request) -> None:
        if request.session_hash and editors.release(request.session_hash):
            logger.debug("Released the editor of a closed page")

    return release_editor


def _labels_of(editor: Editor) -> Labels:
    """What the downloads are made of: the objects (immutable, compared by identity) and the classes."""
    session = editor.session
    return list(session.objects), tuple(session.class_names)


def _same_labels(a: Labels | None, b: Labels) -> bool:
    return (a is not None and a[1] == b[1] and len(a[0]) == len(b[0])
            and all(x is y for x, y in zip(a[0], b[0])))


def _live(editor: Editor | None) -> Editor:
    from grounded_sam.errors import EditError

    if editor is None:
        raise EditError("Nothing to edit yet: upload an image, type the categories and click Run.")
    editor.session  # noqa: B018 (a released editor says so)
    return editor


def _write_downloads(editor: Editor) -> list[str]:
    """Rewrites the editor's downloads and remembers them as sent (call with the editor's lock held)."""
    files = [str(f) for f in editor.write_downloads()]
    editor.sent["downloads"], editor.sent["files"] = _labels_of(editor), files
    return files


class EditHandlers:
    """The panel's event handlers, for one page: the session editors live in ``editors``.

    Handlers that take one input get its value; the ones that read the options take a dict (a
    set-input event) and answer with a dict keyed by component.
    """

    def __init__(self, settings: AppSettings, editors: EditorRegistry, options: OptionsPanel, panel: EditPanel,
                 view: ResultView, store: EditStore | None = None, resume: ResumeRow | None = None) -> None:
        self.settings = settings
        self.editors = editors
        self.options = options
        self.panel = panel
        self.view = view
        self.store = store
        self.resume_row = resume if store is not None else None

    @property
    def outputs(self) -> list[Component]:
        """What every edit answers with (the downloads follow in a second event)."""
        view, panel = self.view, self.panel
        return [view.state, view.overlay, view.legend, view.table, panel.status, panel.class_name, panel.undo,
                panel.redo]

    def respond(self, editor: Editor, status: str, *, new_overlay: bool = True) -> dict[Component, Any]:
        """The answer to an edit: the editor, its overlay, the status, and each part of its view that changed."""
        view = editor.view()
        response: dict[Component, Any] = {self.view.state: editor}
        if new_overlay:
            response[self.view.overlay] = str(editor.write_overlay())
        for key, component, value, update in (
            ("legend", self.view.legend, legend_markup(view.class_names, view.counts, len(view.rows)), None),
            ("rows", self.view.table, view.rows, None),
            ("classes", self.panel.class_name, view.class_names, lambda names: gr.Dropdown(choices=names)),
            ("undo", self.panel.undo, view.can_undo, lambda on: gr.Button(interactive=on)),
            ("redo", self.panel.redo, view.can_redo, lambda on: gr.Button(interactive=on)),
        ):
            if key not in editor.sent or editor.sent[key] != value:
                editor.sent[key] = value
                response[component] = value if update is None else update(value)
        response[self.panel.status] = status_html(status)
        return response

    def edit(self, name: str, editor: Any, request: gr.Request | None, action: Callable[[Editor], str],
             *, new_overlay: bool = True) -> dict[Component, Any]:
        """Runs ``action`` on the session's live editor and answers with what changed."""
        started = time.perf_counter()
        editor = _live(editor)
        with editor.lock:
            status = action(editor)
            response = self.respond(editor, status, new_overlay=new_overlay)
        if request is not None and request.session_hash:
            self.editors.touch(request.session_hash)
        logger.debug("Edit %r answered in %.0f ms", name, 1000 * (time.perf_counter() - started))
        return response

    def clear_result(self, request: gr.Request) -> dict[Component, Any]:
        """Run clears the last result and releases the session's editor."""
        if request.session_hash:
            self.editors.release(request.session_hash)
        view = self.view
        return {view.overlay: None, view.legend: "", view.table: [], view.downloads: None, view.record: None,
                view.state: None, self.panel.status: status_html(EDIT_IDLE)}

    @user_errors()
    def start_editing(self, values: dict[Component, Any], request: gr.Request) -> dict[Component, Any]:
        """After Run: an editor of the result, its downloads, and the class menu set to the run's classes."""
        view, panel = self.view, self.panel
        options = self.options.read(values)
        editor = open_editor(self.settings, values[view.image], values[view.record], options.models.segmenter,
                             options.overlay.style(), detector=options.models.detector)
        if editor is None:  # another image was uploaded meanwhile: show the result, without editing
            legend, rows, files = image_details(values[view.record])
            return {view.state: None, view.legend: legend, view.table: rows, panel.status: status_html(EDIT_IDLE),
                    view.downloads: files}
        if request.session_hash:
            self.editors.add(request.session_hash, editor)
        status = EDIT_READY
        if self.resume_row is not None:
            warning = self._start_saving(editor, values.get(self.resume_row.owner), options.models)
            status = EDIT_READY if warning is None else f"{EDIT_READY} {warning}"
        return self._opened(editor, status, new_overlay=False)  # the run's overlay is shown

    def _opened(self, editor: Editor, status: str, *, new_overlay: bool) -> dict[Component, Any]:
        """The answer that shows a new editor: everything of :meth:`respond`, the class menu and the downloads."""
        with editor.lock:
            files = _write_downloads(editor)
            response = self.respond(editor, status, new_overlay=new_overlay)
        classes = editor.view().class_names
        return {**response, self.panel.class_name: gr.Dropdown(choices=classes, value=classes[0] if classes else None),
                self.view.downloads: files}

    def _start_saving(self, editor: Editor, owner: Any, models: ModelOptions) -> str | None:
        """Attaches a saver to a fresh editor and saves the run's result; returns the warning when that failed."""
        from grounded_sam.editing.store import EditSaver, valid_owner_key

        if not valid_owner_key(owner):  # no page load gave this browser a key (an API client): nothing to save under
            return None
        source = editor.source_path
        editor.saver = EditSaver(self.store, owner, editor.session.key, editor.file_name,
                                 lambda: source.read_bytes() if source is not None else b"", settings=editor.settings,
                                 models={"detector": models.detector, "segmenter": models.segmenter})
        return editor.save()

    def offer_resume(self, owner: Any) -> dict[Component, Any]:
        """On page load: the browser's owner key (a new one the first time) and its saved images to resume."""
        import sqlite3

        from grounded_sam.editing.store import new_owner_key, valid_owner_key

        row = self.resume_row
        if not valid_owner_key(owner):
            return {row.owner: new_owner_key(), row.row: gr.Row(visible=False)}
        try:
            saved = self.store.recent(owner)
        except sqlite3.Error as exc:
            logger.warning("Could not list saved edits: %s", exc)
            saved = []
        now = time.time()
        choices = [(f"{s.file_name} · {_objects(s.object_count)} · saved {_ago(now - s.updated_at)}", s.image_key)
                   for s in saved]
        return {row.owner: owner, row.row: gr.Row(visible=bool(choices)),
                row.choice: gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)}

    @user_errors()
    def resume(self, values: dict[Component, Any], request: gr.Request) -> dict[Component, Any]:
        """Rebuilds the editor of saved edits the browser picked (its own only) and shows it."""
        import sqlite3

        from grounded_sam.app.jobs import new_job_dir
        from grounded_sam.editing.editor import Editor
        from grounded_sam.editing.store import EditSaver, valid_owner_key
        from grounded_sam.errors import EditError, OptionError

        row = self.resume_row
        owner, image_key = values[row.owner], values[row.choice]
        if not valid_owner_key(owner) or not image_key:
            raise EditError("Pick saved edits to resume in the menu (reload the page if it is empty).")
        try:
            saved = self.store.load(owner, str(image_key))
        except (sqlite3.Error, ValueError) as exc:
            logger.warning("Could not read saved edits: %s", exc)
            raise EditError("The saved edits could not be read: run the image again.") from exc
        if saved is None:
            hours = self.settings.edit_retention_hours
            raise EditError(f"Those saved edits are gone (kept {hours:g} h after the last edit, and only the latest "
                            "images of each browser): run the image again.")
        try:
            pipe = ModelOptions(**saved.models).pipeline(self.settings)
        except (OptionError, TypeError):  # the server offers other models since: its defaults refine the clicks
            logger.info("The saved models %s are not offered any more: clicks use the defaults", saved.models)
            pipe = ModelOptions().pipeline(self.settings)
        editor = Editor.from_saved(saved, gpu.GpuDecoder(pipe), new_job_dir(),
                                   style=self.options.read(values).overlay.style())
        source = editor.source_path
        editor.saver = EditSaver(self.store, owner, saved.image_key, editor.file_name, source.read_bytes,
                                 settings=saved.settings, models=saved.models)
        editor.saver.mark_saved(saved.objects, saved.class_names)
        if request.session_hash:
            self.editors.add(request.session_hash, editor)
        status = (f"Resumed {editor.file_name}: {_objects(len(saved.objects))} as saved "
                  f"{_ago(time.time() - saved.updated_at)}. {EDIT_READY}")
        response = {**self._opened(editor, status, new_overlay=True), self.view.image: str(source),
                    self.view.record: None}
        categories = saved.settings.get("categories")
        if isinstance(categories, str) and categories:  # so that Run runs this image as it was run
            response[self.options.categories] = categories
        return response

    @user_errors()
    def refresh_downloads(self, editor: Any) -> Any:
        """The downloads of the edited labels, rewritten only when the labels changed."""
        if editor is None or editor.released:
            return gr.skip()
        with editor.lock:
            if _same_labels(editor.sent.get("downloads"), _labels_of(editor)):
                return gr.skip()
            # Rewritten files replace the list, so a dataset zip of older labels is no longer offered.
            return _write_downloads(editor)

    @user_errors()
    def make_dataset(self, editor: Any) -> list[str]:
        """The downloads plus one zip of the dataset formats, of the labels as they are now."""
        from grounded_sam.app.jobs import new_job_dir

        editor = _live(editor)
        with editor.lock:
            if not _same_labels(editor.sent.get("downloads"), _labels_of(editor)):
                _write_downloads(editor)
            dataset = editor.write_dataset(new_job_dir())
            return [*editor.sent["files"], str(dataset)]

    @user_errors(EDIT_ERROR_S)
    def click_overlay(self, editor: Any, mode: str, class_name: str | None, evt: gr.SelectData,
                      request: gr.Request) -> Any:
        if not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:  # beside the image
            return gr.skip()
        x, y = (float(v) for v in evt.index)
        return self.edit("click", editor, request, lambda e: e.click(x, y, mode, class_name))

    @user_errors(EDIT_ERROR_S)
    def select_row(self, editor: Any, evt: gr.SelectData, request: gr.Request) -> dict[Component, Any]:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return self.edit("select row", editor, request, lambda e: e.select(int(row)))

    @user_errors(EDIT_ERROR_S)
    def change_mode(self, editor: Any, mode: str, request: gr.Request) -> Any:
        if editor is None or editor.released:
            return gr.skip()
        pending = editor.corner is not None  # a half-drawn box is dropped: redraw without its marker
        return self.edit("mode", editor, request, lambda e: e.set_mode(mode), new_overlay=pending)

    @user_errors(EDIT_ERROR_S)
    def relabel(self, editor: Any, class_name: str | None, request: gr.Request) -> dict[Component, Any]:
        return self.edit("relabel", editor, request, lambda e: e.relabel(class_name))

    def button(self, name: str, action: Callable[[Editor], str]) -> Callable[..., dict[Component, Any]]:
        """The handler of a button that edits with ``action`` (delete, undo, redo, reset)."""

        @user_errors(EDIT_ERROR_S)
        def handler(editor: Any, request: gr.Request) -> dict[Component, Any]:
            return self.edit(name, editor, request, action)

        return handler


def _objects(count: int) -> str:
    return f"{count} object{'' if count == 1 else 's'}"


def _ago(seconds: float) -> str:
    """"just now", "5 min ago", "3 h ago", "2 days ago"."""
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600:.0f} h ago"
    return f"{seconds // 86400:.0f} days ago"


def wire_resume(demo: gr.Blocks, edits: EditHandlers) -> None:
    """Page load offers the browser's saved edits; Resume opens one (nothing to wire when edits are not saved)."""
    row = edits.resume_row
    if row is None:
        return
    quiet = {**EDIT_GROUP, "api_visibility": "private", "show_progress": "hidden"}
    demo.load(edits.offer_resume, row.owner, [row.owner, row.row, row.choice], **quiet)
    view = edits.view
    row.button.click(edits.resume, {row.owner, row.choice, *edits.options.overlay},
                     [*edits.outputs, view.downloads, view.image, view.record, edits.options.categories],
                     **{**quiet, "show_progress": "minimal"})


def wire_edit_panel(edits: EditHandlers, dataset_button: gr.Button) -> None:
    """Wires every edit, each followed by the downloads, and the dataset button."""
    panel, view = edits.panel, edits.view
    # Edits that may run SAM2's decoder join the model queue; the rest their own group. Clicks
    # are never dropped (trigger_mode "multiple"): each one is an edit.
    decoder_event = {**MODEL_GROUP, "api_visibility": "private", "show_progress": "minimal",
                     "show_progress_on": [panel.status], "trigger_mode": "multiple"}
    quick_event = {**decoder_event, **EDIT_GROUP}
    downloads_event = {**EDIT_GROUP, "api_visibility": "private", "show_progress": "hidden"}
    for trigger, handler, inputs, event in (
        (view.overlay.select, edits.click_overlay, [view.state, panel.mode, panel.class_name], decoder_event),
        (view.table.select, edits.select_row, [view.state], quick_event),
        (panel.mode.change, edits.change_mode, [view.state, panel.mode], quick_event),
        (panel.delete.click, edits.button("delete", lambda e: e.delete()), [view.state], quick_event),
        (panel.relabel.click, edits.relabel, [view.state, panel.class_name], quick_event),
        (panel.undo.click, edits.button("undo", lambda e: e.undo()), [view.state], quick_event),
        (panel.redo.click, edits.button("redo", lambda e: e.redo()), [view.state], quick_event),
        (panel.reset.click, edits.button("reset", lambda e: e.reset()), [view.state], quick_event),
    ):
        # The overlay comes back first; the downloads follow in a second, cheaper step.
        trigger(handler, inputs, edits.outputs, **event).success(
            edits.refresh_downloads, view.state, view.downloads, **downloads_event)
    dataset_button.click(edits.make_dataset, view.state, view.downloads, api_visibility="private", **EDIT_GROUP)
