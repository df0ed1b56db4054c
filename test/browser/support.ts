import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { buildTestApp, type TestApp } from '../helpers.ts';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** A free loopback port: PUBLIC_URL must name the address the browser uses, so it is chosen first. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** The real app on a socket, with PUBLIC_URL set to where it listens (mailed links point there). */
export async function startServer(): Promise<{ t: TestApp; origin: string }> {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const t = await buildTestApp({ env: { PUBLIC_URL: origin } });
  await t.app.listen({ host: '127.0.0.1', port });
  return { t, origin };
}

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update'],
  });
}

export interface DocumentSeen {
  url: string;
  status: number;
  headers: Record<string, string>;
}

/**
 * Records what a test must assert about every page: the headers of each HTML document the browser
 * loaded, and every console message (Chromium reports each CSP violation there).
 */
export class Watcher {
  readonly documents: DocumentSeen[] = [];
  readonly console: string[] = [];

  async page(context: BrowserContext): Promise<Page> {
    const page = await context.newPage();
    page.on('console', (message) => this.console.push(`${message.type()}: ${message.text()}`));
    page.on('pageerror', (error) => this.console.push(`pageerror: ${error.message}`));
    page.on('response', (response) => {
      if (response.request().resourceType() !== 'document') return;
      this.documents.push({ url: response.url(), status: response.status(), headers: response.headers() });
    });
    return page;
  }

  cspViolations(): string[] {
    return this.console.filter((line) => /content security policy|refused to/i.test(line));
  }
}

/** The text of the page's error live region (empty when the last submission went through). */
export const errorText = async (page: Page) => ((await page.textContent('#form-error')) ?? '').trim();
