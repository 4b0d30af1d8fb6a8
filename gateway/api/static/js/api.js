// The REST API as the page uses it. Every failure becomes an ApiError whose message is a sentence
// a person can act on (the server's "detail" when it gives one).

import { authHeaders, signedOutByServer } from "./auth.js";

export const API = "/v1";

export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

const STATUS_WORDS = {
  400: "The server could not read the request.",
  401: "Your key was refused: sign in again.",
  404: "Not found: it may have been deleted.",
  405: "This server does not offer that action.",
  413: "The file is larger than this server accepts.",
  429: "You have reached a limit of this server; try again later.",
  415: "The upload was not sent as a file.",
  422: "The server refused the input.",
  500: "The server failed; try again later.",
  502: "The server is unreachable; try again later.",
  503: "The server is not ready (a stage or the storage is down); try again later.",
};

async function readBody(resp) {
  const text = await resp.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return text;
  }
}

function detailOf(body) {
  if (body && typeof body === "object" && body.detail) {
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  }
  return "";
}

/** fetch + JSON; throws ApiError with the server's reason on any status >= 400 or network failure. */
export async function request(method, url, options = {}) {
  let resp;
  try {
    resp = await fetch(url, { method, ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  } catch (err) {
    throw new ApiError(0, `Could not reach the server (${err.message}). Check the connection and retry.`);
  }
  const body = resp.status === 204 ? null : await readBody(resp);
  if (resp.status === 401) signedOutByServer();
  if (!resp.ok) {
    const words = detailOf(body) || STATUS_WORDS[resp.status] || `The server answered ${resp.status}.`;
    throw new ApiError(resp.status, words, body);
  }
  return body;
}

export const getJob = (id) => request("GET", `${API}/jobs/${id}`);
export const listJobs = (limit = 50) => request("GET", `${API}/jobs?limit=${limit}`);
export const deleteJob = (id) => request("DELETE", `${API}/jobs/${id}`);
export const retryJob = (id) => request("POST", `${API}/jobs/${id}/retry`);
export const getOptions = () => request("GET", `${API}/options`);
export const getModels = () => request("GET", `${API}/models`);
export const getLifterWeights = () => request("GET", `${API}/lifter-weights`);

/**
 * POST a video with its options; onProgress(fraction 0..1) while the bytes go up.
 * Resolves to the job view (202), rejects with ApiError (413, 422 with body.job, ...).
 */
export function submitJob(form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${API}/jobs`);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.responseType = "text";
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onerror = () => reject(new ApiError(0, "The upload was interrupted: the server closed the connection or is unreachable."));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      if (xhr.status === 202) return resolve(body);
      if (xhr.status === 401) signedOutByServer();
      const words = detailOf(body) || STATUS_WORDS[xhr.status] || `The server answered ${xhr.status}.`;
      reject(new ApiError(xhr.status, words, body));
    };
    xhr.send(form);
  });
}
