/**
 * "Run on a cluster..." (issue 16): a command on .ipynb files in the file browser's context
 * menu and a button of the notebook toolbar; both open {@link RunNotebookForm} in a dialog,
 * and a submission opens the execution's tab. The executed notebook opens from that tab
 * (`executed.tsx`).
 *
 * No @jupyterlab/filebrowser or @jupyterlab/notebook import: the file browser is found in the
 * shell by its id and read through the few members used here, the toolbar button is a
 * document-registry widget extension of the Notebook factory.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, showErrorMessage, ToolbarButton } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import type { DocumentRegistry, DocumentWidget } from '@jupyterlab/docregistry';
import { staxIcon } from '../icons';
import type { StaxModel } from '../model/model';
import { RunNotebookForm } from './form';
import { contentsPath } from './logic';

export const RUN_NOTEBOOK = 'stax:run-notebook';
export const OPEN_EXECUTED = 'stax:open-executed-notebook';

/** What is used of JupyterLab's FileBrowser (found in the shell by its id). */
interface FileBrowserLike {
  selectedItems(): Iterator<{ path: string; type: string }>;
}

function selectedNotebook(app: JupyterFrontEnd): string | null {
  for (const w of app.shell.widgets('left')) {
    if (w.id === 'filebrowser' && 'selectedItems' in w) {
      const first = (w as unknown as FileBrowserLike).selectedItems().next();
      const item = first.done ? null : first.value;
      return item && item.path.endsWith('.ipynb') ? item.path : null;
    }
  }
  return null;
}

function currentNotebook(app: JupyterFrontEnd): string | null {
  const w = app.shell.currentWidget as unknown as {
    context?: { path?: string };
  } | null;
  const path = w?.context?.path;
  return typeof path === 'string' && path.endsWith('.ipynb') ? path : null;
}

/** The dialog with the form; resolves when it closes. */
async function openForm(
  model: StaxModel,
  path: string,
  openExecution: (id: string) => void
): Promise<void> {
  let dialog: Dialog<unknown> | null = null;
  const body = new RunNotebookForm(model, path, id => {
    dialog?.resolve(0);
    openExecution(id);
  });
  dialog = new Dialog({
    title: `Run ${path.split('/').pop()} on a cluster`,
    body,
    buttons: [Dialog.cancelButton({ label: 'Close' })]
  });
  dialog.addClass('jp-StaxRunNotebook-dialog');
  await dialog.launch();
}

export function registerNotebookRun(
  app: JupyterFrontEnd,
  model: StaxModel,
  openExecution: (id: string) => void
): void {
  app.commands.addCommand(RUN_NOTEBOOK, {
    label: 'Run on a cluster…',
    caption:
      'Run this notebook as a StaX step on a cluster (papermill), with parameters',
    icon: args => (args.isPalette ? undefined : staxIcon),
    execute: args => {
      const path =
        typeof args.path === 'string'
          ? args.path
          : args.from === 'filebrowser'
            ? selectedNotebook(app)
            : (currentNotebook(app) ?? selectedNotebook(app));
      if (!path) {
        return showErrorMessage(
          'Run on a cluster',
          'Select a notebook (.ipynb) in the file browser, or open one.'
        );
      }
      return openForm(model, path, openExecution);
    }
  });
  app.contextMenu.addItem({
    command: RUN_NOTEBOOK,
    args: { from: 'filebrowser' },
    selector: '.jp-DirListing-item[data-file-type="notebook"]',
    rank: 3
  });

  app.commands.addCommand(OPEN_EXECUTED, {
    label: 'Open the Executed Notebook',
    execute: async args => {
      const local = typeof args.local === 'string' ? args.local : '';
      const root = PageConfig.getOption('serverRoot');
      const path = contentsPath(local, root);
      if (path === null) {
        return showErrorMessage(
          'Executed notebook outside the Jupyter root',
          `The executed notebook is ${local}, outside this server's root (${root}).`
        );
      }
      await app.commands.execute('docmanager:open', { path });
    }
  });

  // a button in every notebook's toolbar
  const extension: DocumentRegistry.IWidgetExtension<
    DocumentWidget,
    DocumentRegistry.IModel
  > = {
    createNew: (panel, context) => {
      const button = new ToolbarButton({
        icon: staxIcon,
        label: 'Run on a cluster…',
        tooltip:
          'Run this notebook as a StaX step on a cluster, with parameters',
        className: 'jp-StaxRunNotebook-toolbar',
        onClick: () =>
          void app.commands.execute(RUN_NOTEBOOK, { path: context.path })
      });
      panel.toolbar.insertAfter('cellType', 'staxRunNotebook', button);
      return button;
    }
  };
  app.docRegistry.addWidgetExtension('Notebook', extension);
}
