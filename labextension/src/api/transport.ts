/** The JupyterLab side of the client: requests go through ServerConnection (token, XSRF). */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { API_PREFIX, StaxClient, type Transport } from './client';

export function serverTransport(
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Transport {
  return (path: string, init: RequestInit) => {
    const q = path.indexOf('?');
    const route = q < 0 ? path : path.slice(0, q);
    const search = q < 0 ? '' : path.slice(q);
    const url = URLExt.join(settings.baseUrl, API_PREFIX, route) + search;
    return ServerConnection.makeRequest(url, init, settings);
  };
}

export function serverClient(
  settings?: ServerConnection.ISettings
): StaxClient {
  return new StaxClient(serverTransport(settings));
}
