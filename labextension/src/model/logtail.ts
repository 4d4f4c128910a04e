/**
 * Follows one step's stdout or stderr like `tail -f`: the last `tailBytes` first, then what the
 * step appends, one `GET .../log?offset=` a second until the server says `eof` (the step is
 * final and everything was read).
 */
import type { StaxClient } from '../api/client';

export interface LogTailOptions {
  tailBytes?: number;
  intervalMs?: number;
  /** Most characters kept in memory (older text is dropped). */
  maxChars?: number;
  onChange?: () => void;
}

export class LogTail {
  text = '';
  /** Text before the shown part was left out. */
  truncated = false;
  eof = false;
  error: string | null = null;
  private offset = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private disposed = false;
  private readonly tailBytes: number;
  private readonly intervalMs: number;
  private readonly maxChars: number;

  constructor(
    private readonly client: StaxClient,
    readonly executionId: string,
    readonly step: string,
    readonly stream: 'stdout' | 'stderr',
    private readonly options: LogTailOptions = {}
  ) {
    this.tailBytes = options.tailBytes ?? 64 * 1024;
    this.intervalMs = options.intervalMs ?? 1000;
    this.maxChars = options.maxChars ?? 512 * 1024;
  }

  /** Read the tail, then follow until eof or dispose(). */
  async start(): Promise<void> {
    try {
      const probe = await this.client.log(this.executionId, this.step, {
        stream: this.stream,
        offset: 0,
        limit: 0
      });
      this.offset = Math.max(0, probe.size - this.tailBytes);
      this.truncated = this.offset > 0;
    } catch (e) {
      this.fail(e);
      return;
    }
    await this.tick();
  }

  private async tick(): Promise<void> {
    if (this.disposed) {
      return;
    }
    try {
      for (;;) {
        const chunk = await this.client.log(this.executionId, this.step, {
          stream: this.stream,
          offset: this.offset
        });
        if (this.disposed) {
          return;
        }
        this.error = null;
        this.append(chunk.data);
        const moved = chunk.next_offset !== this.offset;
        this.offset = chunk.next_offset;
        this.eof = chunk.eof;
        if (!moved || chunk.next_offset >= chunk.size || chunk.eof) {
          break;
        }
      }
      this.options.onChange?.();
    } catch (e) {
      this.fail(e);
    }
    if (!this.eof && !this.disposed) {
      this.timer = setTimeout(() => void this.tick(), this.intervalMs);
    }
  }

  private append(data: string): void {
    if (!data) {
      return;
    }
    let text = this.text + data;
    if (text.length > this.maxChars) {
      text = text.slice(text.length - this.maxChars);
      this.truncated = true;
    }
    this.text = text;
  }

  private fail(e: unknown): void {
    this.error = e instanceof Error ? e.message : String(e);
    this.options.onChange?.();
  }

  dispose(): void {
    this.disposed = true;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }
}
