import { Widget } from '@lumino/widgets';

import { statusCounts, statusText } from '../model/executions';
import type { StaxModel } from '../model/model';

/** "StaX: 2 running, 1 failed" in the status bar; a click opens the sidebar. */
export class StaxStatus extends Widget {
  private readonly onOpen: () => void;

  constructor(
    private readonly model: StaxModel,
    onOpen: () => void
  ) {
    super({ node: document.createElement('button') });
    this.addClass('jp-StaxStatus');
    this.onOpen = () => onOpen();
    this.node.title = 'Open the StaX sidebar';
    this.node.addEventListener('click', this.onOpen);
    model.changed.connect(() => this.update());
    this.update();
  }

  update(): void {
    const counts = statusCounts(this.model.all.items, Date.now());
    this.node.textContent = statusText(counts);
    this.node.dataset.running = String(counts.running);
    this.node.dataset.failed = String(counts.failed);
    this.toggleClass('jp-mod-failed', counts.failed > 0);
  }

  dispose(): void {
    this.node.removeEventListener('click', this.onOpen);
    super.dispose();
  }
}
