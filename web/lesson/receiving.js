// Receiving-classroom terminal (接收课堂), kiosk mode: see listener.js.
import { runListener } from "/lesson/listener.js";

runListener({ kind: "receiving", roles: ["terminal", "teacher"], title: "接收课堂" });
