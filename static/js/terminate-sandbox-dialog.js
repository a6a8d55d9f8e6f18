import { describeError } from './api.js';
import { showMessage } from './dom.js';
import { shortId } from './format.js';

/**
 * Confirmation before terminating a sandbox, with the choice to save a snapshot first. When that
 * snapshot fails (502) the dialog explains why and offers to terminate without it.
 */
export class TerminateSandboxDialog {
  constructor({ api, dialog, onTerminated }) {
    this.api = api;
    this.dialog = dialog;
    this.onTerminated = onTerminated;
    this.form = dialog.querySelector('form');
    this.snapshotFirst = dialog.querySelector('[name="snapshot_first"]');
    this.title = dialog.querySelector('[data-role="title"]');
    this.volume = dialog.querySelector('[data-role="volume"]');
    this.error = dialog.querySelector('[data-role="form-error"]');
    this.progress = dialog.querySelector('[data-role="progress"]');
    this.confirm = dialog.querySelector('[data-role="confirm"]');
    this.force = dialog.querySelector('[data-role="force"]');
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.terminate({ sync: this.snapshotFirst.checked, force: false });
    });
    this.force.addEventListener('click', () => void this.terminate({ sync: false, force: true }));
    dialog.querySelector('[data-role="close"]').addEventListener('click', () => dialog.close());
  }

  open(sandbox) {
    this.sandbox = sandbox;
    this.title.textContent = `Terminate sandbox ${shortId(sandbox.sandbox_id)}?`;
    this.volume.textContent = sandbox.volume_name || 'its volume';
    this.snapshotFirst.checked = true;
    this.force.hidden = true;
    showMessage(this.error, '');
    this.setBusy(false);
    this.dialog.showModal();
    this.dialog.querySelector('[data-role="close"]').focus();
  }

  async terminate(options) {
    showMessage(this.error, '');
    this.setBusy(true, options.sync);
    try {
      const sandbox = await this.api.terminateSandbox(this.sandbox.sandbox_id, options);
      this.dialog.close();
      this.onTerminated(sandbox);
    } catch (error) {
      const snapshotFailed = error.status === 502;
      showMessage(this.error, snapshotFailed ? `The snapshot could not be saved, so the sandbox is still running. ${describeError(error)}` : `The sandbox could not be terminated. ${describeError(error)}`);
      this.force.hidden = !snapshotFailed;
      (snapshotFailed ? this.force : this.confirm).focus();
    } finally {
      this.setBusy(false);
    }
  }

  setBusy(busy, syncing = false) {
    this.form.querySelector('fieldset').disabled = busy;
    this.progress.hidden = !busy;
    this.progress.lastElementChild.textContent = syncing ? 'Saving a snapshot, then terminating…' : 'Terminating…';
  }
}
