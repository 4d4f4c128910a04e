/**
 * jupyter-stax: the StaX sidebar (clusters, images, executions), execution detail tabs, a status
 * bar item, notifications and commands, on top of the jupyter_stax server extension.
 */
import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  Notification,
  WidgetTracker,
  type MainAreaWidget
} from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';

import { RETRYABLE_EXECUTION_STATES, type Emission } from './api/types';
import { serverClient } from './api/transport';
import { StaxModel } from './model/model';
import { shortId } from './model/format';
import { staxIcon } from './icons';
import {
  confirmCancel,
  confirmRetry,
  createDetailWidget,
  type ExecutionDetail
} from './widgets/detail';
import { CommandIDs, PANEL_ID, StaxPanel } from './widgets/panel';
import { StaxStatus } from './widgets/status';
import { OPEN_EXECUTED, registerNotebookRun } from './notebookrun/plugin';

const PLUGIN_ID = 'jupyter-stax:plugin';
const CATEGORY = 'StaX';

function activate(
  app: JupyterFrontEnd,
  settingRegistry: ISettingRegistry | null,
  palette: ICommandPalette | null,
  statusBar: IStatusBar | null,
  restorer: ILayoutRestorer | null
): StaxModel {
  const model = new StaxModel(serverClient(app.serviceManager.serverSettings));
  let notify = true;

  // ---- the sidebar
  const panel = new StaxPanel(model, app.commands);
  app.shell.add(panel, 'left', { rank: 600 });
  restorer?.add(panel, PANEL_ID);

  // ---- detail tabs
  const tracker = new WidgetTracker<MainAreaWidget<ExecutionDetail>>({
    namespace: 'jupyter-stax-execution'
  });
  const openExecution = (id: string): MainAreaWidget<ExecutionDetail> => {
    const existing = tracker.find(w => w.content.executionId === id);
    if (existing) {
      app.shell.activateById(existing.id);
      return existing;
    }
    const name = model.all.items.find(x => x.id === id)?.name;
    const widget = createDetailWidget(model, id, name, local => {
      void app.commands.execute(OPEN_EXECUTED, { local });
    });
    void tracker.add(widget);
    app.shell.add(widget, 'main');
    app.shell.activateById(widget.id);
    return widget;
  };
  void restorer?.restore(tracker, {
    command: CommandIDs.openExecution,
    args: w => ({ id: w.content.executionId }),
    name: w => w.content.executionId
  });

  registerNotebookRun(app, model, id => void openExecution(id)); // issue 16

  // ---- commands
  const selectedSummary = () =>
    model.selected
      ? (model.all.items.find(x => x.id === model.selected) ??
        model.executions.find(x => x.id === model.selected))
      : undefined;
  app.commands.addCommand(CommandIDs.openPanel, {
    label: 'Open the StaX Sidebar',
    caption: 'Clusters, images and executions',
    icon: args => (args.isPalette ? undefined : staxIcon),
    execute: () => app.shell.activateById(PANEL_ID)
  });
  app.commands.addCommand(CommandIDs.refresh, {
    label: 'Refresh StaX Clusters, Images and Executions',
    execute: () => model.refresh()
  });
  app.commands.addCommand(CommandIDs.openExecution, {
    label: args =>
      typeof args.id === 'string'
        ? `Open StaX Execution ${shortId(args.id)}`
        : 'Open Selected StaX Execution',
    isEnabled: args => typeof args.id === 'string' || model.selected !== null,
    execute: args => {
      const id = typeof args.id === 'string' ? args.id : model.selected;
      if (id) {
        openExecution(id);
      }
    }
  });
  app.commands.addCommand(CommandIDs.cancelSelected, {
    label: 'Cancel Selected StaX Execution',
    isEnabled: () => {
      const s = selectedSummary();
      return (
        s !== undefined && (s.state === 'pending' || s.state === 'running')
      );
    },
    execute: async () => {
      const s = selectedSummary();
      if (s) {
        await confirmCancel(model, s.id, s.name);
      }
    }
  });
  app.commands.addCommand(CommandIDs.retrySelected, {
    label: 'Retry Failed Steps of Selected StaX Execution',
    isEnabled: () => {
      const s = selectedSummary();
      return s !== undefined && RETRYABLE_EXECUTION_STATES.has(s.state);
    },
    execute: async () => {
      const s = selectedSummary();
      if (s) {
        await confirmRetry(model, s.id, s.name);
      }
    }
  });
  if (palette) {
    for (const command of [
      CommandIDs.openPanel,
      CommandIDs.refresh,
      CommandIDs.openExecution,
      CommandIDs.cancelSelected,
      CommandIDs.retrySelected
    ]) {
      palette.addItem({ command, category: CATEGORY });
    }
  }
  model.changed.connect(() => app.commands.notifyCommandChanged());

  // ---- status bar
  if (statusBar) {
    const status = new StaxStatus(model, () =>
      app.shell.activateById(PANEL_ID)
    );
    statusBar.registerStatusItem('jupyter-stax:status', {
      item: status,
      align: 'left',
      rank: 50
    });
  }

  // ---- notifications
  model.finished.connect((_, ex) => {
    if (!notify) {
      return;
    }
    const text = `StaX: ${ex.name} (${shortId(ex.id)}) ${ex.state}`;
    const options = {
      autoClose: ex.state === 'completed' ? 8000 : (false as const),
      actions: [
        {
          label: 'Open',
          caption: 'Open the execution',
          callback: () =>
            void app.commands.execute(CommandIDs.openExecution, { id: ex.id })
        }
      ]
    };
    if (ex.state === 'completed') {
      Notification.success(text, options);
    } else if (ex.state === 'failed') {
      Notification.error(text, options);
    } else {
      Notification.warning(text, options);
    }
  });

  // ---- events: the server's stream, no websocket of our own
  const onEmission = (_: unknown, emission: Emission) =>
    model.handleEmission(emission);
  app.serviceManager.events.stream.connect(onEmission);

  // ---- settings
  if (settingRegistry) {
    void settingRegistry
      .load(PLUGIN_ID)
      .then(settings => {
        const apply = () => {
          model.refreshInterval =
            Number(settings.get('refreshInterval').composite) || 30;
          notify = settings.get('notifications').composite !== false;
        };
        apply();
        settings.changed.connect(apply);
      })
      .catch((reason: unknown) =>
        console.error('jupyter-stax: could not load settings', reason)
      );
  }

  void app.restored.then(() => model.start());
  return model;
}

const plugin: JupyterFrontEndPlugin<StaxModel> = {
  id: PLUGIN_ID,
  description:
    'StaX sidebar: clusters, images and live HPC workflow executions.',
  autoStart: true,
  optional: [ISettingRegistry, ICommandPalette, IStatusBar, ILayoutRestorer],
  activate
};

export default plugin;
