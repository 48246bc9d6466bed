export * from "./api.js";
export * from "./sidecar.js";
