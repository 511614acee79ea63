// Home student (名校网络课堂), joined from a link /lesson/student.html?lesson=ID: see listener.js.
import { runListener } from "/lesson/listener.js";

runListener({ kind: "student", roles: ["student", "teacher"], title: "在线听课" });
